import Glibc

/// The far end of a `Connection(embedded:)`, played by a test, in the spirit
/// of SwiftNIO's EmbeddedChannel: no socket and no turning loop. What the
/// connection writes lands in `written`; what the test `send`s is read by the
/// connection at once (unless it paused reading, then when it resumes); the
/// test half-closes, resets, lets a full "socket" drain, or completes a
/// connect. Everything happens synchronously on the caller's thread.
public final class EmbeddedPeer {
    weak var connection: Connection?
    /// Everything the connection wrote and `takeWritten` has not taken yet.
    public private(set) var written: [UInt8] = []
    /// How many more bytes the "socket" takes before it is full; nil: no limit.
    public var room: Int?
    /// Bytes sent by the test that the connection has not read yet.
    var unsent: [UInt8] = []
    private var endSent = false
    var connectError: Int32 = 0
    /// The connection closed (by itself, or because the test reset it).
    public internal(set) var isClosed = false
    /// The connection closed with a reset (`abort`).
    public internal(set) var wasReset = false
    /// The connection half-closed its output (`closeGracefully`).
    public internal(set) var outputEnded = false

    public init() {}

    /// The connection still waits for `establish`.
    public var isConnecting: Bool { connection?.isConnecting ?? false }

    /// Takes, and forgets, what the connection wrote so far.
    public func takeWritten() -> [UInt8] {
        defer { written.removeAll() }
        return written
    }

    /// Bytes arrive from the far end.
    public func send(_ bytes: some Sequence<UInt8>) {
        unsent.append(contentsOf: bytes)
        deliver()
    }

    /// The far end sends nothing more (`shutdown(SHUT_WR)`).
    public func endInput() {
        endSent = true
        deliver()
    }

    /// The far end resets the connection.
    public func reset() {
        connection?.closedByPeer(errno: ECONNRESET)
    }

    /// The connection waits to hear that the "socket" takes more bytes: its
    /// output is backed up, or it asked for `notifyWhenWritable`.
    public var isWaitingForDrain: Bool { connection?.isWaitingForWritable ?? false }

    /// The "socket" takes `room` more bytes (nil: any amount) and the
    /// connection hears it may write again.
    public func drain(room: Int? = nil) {
        self.room = room
        connection?.handleWritable()
    }

    /// An outgoing connection's connect completes, or fails with `error`.
    public func establish(error: Int32 = 0) {
        connectError = error
        connection?.handleWritable()
    }

    /// Feeds the connection until it has read everything, or pauses.
    func deliver() {
        while let connection, !connection.isClosed, !connection.isReadingPaused, !connection.inputEnded,
              !unsent.isEmpty || endSent {
            connection.handleReadable()
        }
    }

    func readingResumed() { deliver() }

    // MARK: The connection's side

    func take(_ bytes: UnsafeRawBufferPointer) -> IOResult {
        let count = min(bytes.count, room ?? Int.max)
        if count == 0 { return .wouldBlock }
        written.append(contentsOf: bytes.prefix(count))
        if let room { self.room = room - count }
        return .transferred(count)
    }

    func give(into space: UnsafeMutableRawBufferPointer) -> IOResult {
        if unsent.isEmpty { return endSent ? .endOfFile : .wouldBlock }
        let count = min(space.count, unsent.count)
        unsent.withUnsafeBytes { space.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: count) }
        unsent.removeFirst(count)
        return .transferred(count)
    }
}
