import Buffers
import CLibevent
import Glibc

/// What a connection tells its owner. Every call arrives on the connection's loop thread.
public protocol ConnectionHandler: AnyObject {
    /// New bytes were appended to `connection.input`. Consume what can be answered
    /// and append replies to `connection.output`; the connection writes them when
    /// this returns.
    func connectionReadable(_ connection: Connection)
    /// The output that had filled the socket has been written out completely.
    func connectionDrained(_ connection: Connection)
    /// The connection is closed (by the peer, an error, or `close()`); called once.
    /// `connection.closeError` tells why when an error closed it.
    func connectionClosed(_ connection: Connection)
    /// An outgoing connection finished connecting (see `Connection(connecting:)`).
    func connectionEstablished(_ connection: Connection)
    /// The peer will send nothing more (it half-closed, `shutdown(SHUT_WR)`).
    /// Reading has stopped; the connection stays open for replies until the
    /// handler closes it. By default it is closed at once.
    func connectionInputEnded(_ connection: Connection)
}

extension ConnectionHandler {
    public func connectionEstablished(_ connection: Connection) {}
    public func connectionInputEnded(_ connection: Connection) { connection.close() }
}

/// A non-blocking TCP connection owned by one `EventLoop` for its whole life.
///
/// Each read wake-up does one read(2) into `input` and hands the bytes to the
/// handler; replies gathered in `output` leave with one write(2). A write event
/// is armed only after the socket refused bytes, so a request-response exchange
/// costs one read and one write. Loop thread only.
public final class Connection {
    public let fd: Int32
    public unowned let loop: EventLoop
    public var input: ByteBuffer
    public var output: ByteBuffer
    public private(set) var handler: (any ConnectionHandler)?
    public private(set) var isClosed = false
    /// True until an outgoing connect completes; output waits meanwhile.
    public private(set) var isConnecting = false
    /// The errno that closed the connection, or 0 (closed by the peer or by us).
    public private(set) var closeError: Int32 = 0
    /// Bytes the most recent read brought in (for byte counters).
    public private(set) var lastReadCount = 0

    private var readEvent: OpaquePointer?
    private var writeEvent: OpaquePointer?
    /// The TLS session of a connection accepted on a TLS listener; nil for plain text.
    private let tls: TLSStream?

    /// Whether a plain-text connection's input starts like a TLS handshake (a
    /// ClientHello record: type 22, version 3.x): a client set up for TLS on a
    /// plain-text listener. Ask before the first request is consumed.
    public var plainTextPeerSentTLSHandshake: Bool {
        let bytes = input.readableBytes
        return tls == nil && bytes.count >= 2 && bytes[0] == 0x16 && bytes[1] == 0x03
    }
    /// Tests only: the other end of a connection with no socket (see `EmbeddedPeer`).
    public let embeddedPeer: EmbeddedPeer?
    private var readingPaused = false
    private var writeArmed = false
    private var closeWhenDrained = false
    /// `notifyWhenWritable` was asked: keep the write event armed until it fires.
    private var drainNoticeWanted = false
    /// `closeGracefully` was called: input is dropped, the end is near.
    private var lingering = false
    private var outputShutDown = false
    /// A TLS session could not be made for this socket: it closes at once.
    private let tlsUnavailable: Bool
    /// Bytes the peer must send first, taken off before the handler reads
    /// (`expectFirst`), and what to do when it sends something else.
    private var expectedFirst: [UInt8]?
    private var unexpectedFirst: ((String) -> Void)?

    /// The peer's first bytes must be `bytes` (the answer to a request sent
    /// ahead of everything else, e.g. a login): they are consumed here, and
    /// anything else closes the connection after `refused` heard the line.
    public func expectFirst(_ bytes: [UInt8], refused: @escaping (String) -> Void) {
        expectedFirst = bytes
        unexpectedFirst = refused
    }

    /// Takes the expected first bytes off `input`; false when the peer sent
    /// others (the connection is closed) or not enough yet.
    private func consumeExpectedFirst() -> Bool {
        guard let expected = expectedFirst else { return true }
        let have = input.readableBytes
        let common = min(have.count, expected.count)
        if !have.prefix(common).elementsEqual(expected.prefix(common)) {
            let line = have.prefix(while: { $0 != UInt8(ascii: "\r") && $0 != UInt8(ascii: "\n") }).prefix(200)
            expectedFirst = nil
            unexpectedFirst?(String(decoding: line, as: UTF8.self))
            unexpectedFirst = nil
            close(error: EACCES)
            return false
        }
        guard have.count >= expected.count else { return false }
        input.consume(expected.count)
        expectedFirst = nil
        unexpectedFirst = nil
        return !input.isEmpty
    }

    /// Room made in `input` before each read.
    public static let readChunk = 16 * 1024
    /// Buffers that grew past this for one large value are shrunk back once empty.
    static let retainedCapacity = 64 * 1024

    /// Adopts an accepted or connecting socket and starts reading from it;
    /// with `tls`, as the server side of a TLS session (the handshake is
    /// made by the first reads and writes).
    public convenience init(fd: Int32, loop: EventLoop, handler: any ConnectionHandler, tls context: TLSServerContext? = nil) {
        self.init(fd: fd, loop: loop, handler: handler, stream: context.flatMap { TLSStream(context: $0, fd: fd) },
                  wantedTLS: context != nil)
    }

    private init(fd: Int32, loop: EventLoop, handler: any ConnectionHandler, stream: TLSStream?, wantedTLS: Bool) {
        self.fd = fd
        self.loop = loop
        self.handler = handler
        self.embeddedPeer = nil
        self.tls = stream
        self.tlsUnavailable = wantedTLS && stream == nil
        self.input = ByteBuffer(capacity: Connection.readChunk)
        self.output = ByteBuffer(capacity: Connection.readChunk)
        // The connection keeps itself alive while open; `close()` releases it.
        let context = Unmanaged.passRetained(self).toOpaque()
        readEvent = event_new(loop.base, fd, Int16(EV_READ | EV_PERSIST), connectionReadCallback, context)
        writeEvent = event_new(loop.base, fd, Int16(EV_WRITE | EV_PERSIST), connectionWriteCallback, context)
        event_add(readEvent, nil)
    }

    /// A connection with no socket, for tests: what it writes is kept by
    /// `peer`, and the test plays the other end through it (sends bytes,
    /// half-closes, resets, lets it drain). With `connecting`, it waits for
    /// `peer.establish()`. Nothing touches the loop, which need not run.
    public init(embedded peer: EmbeddedPeer, loop: EventLoop, handler: any ConnectionHandler, connecting: Bool = false) {
        self.fd = -1
        self.loop = loop
        self.handler = handler
        self.embeddedPeer = peer
        self.tls = nil
        self.tlsUnavailable = false
        self.input = ByteBuffer(capacity: Connection.readChunk)
        self.output = ByteBuffer(capacity: Connection.readChunk)
        self.isConnecting = connecting
        _ = Unmanaged.passRetained(self)
        peer.connection = self
    }

    /// Adopts a socket whose non-blocking connect is in progress (`Socket.connect`).
    /// Output written before the connect completes is sent once it does; the
    /// handler hears `connectionEstablished`, or `connectionClosed` on failure.
    /// With `tls`, the client side of a TLS session whose server must prove
    /// it is `peer` (an address or a host name); the handshake starts once
    /// the connect completes.
    public convenience init(connecting fd: Int32, loop: EventLoop, handler: any ConnectionHandler,
                            tls context: TLSClientContext? = nil, peer: String = "") {
        self.init(fd: fd, loop: loop, handler: handler,
                  stream: context.flatMap { TLSStream(context: $0, fd: fd, peer: peer) }, wantedTLS: context != nil)
        isConnecting = true
        armWrite()
    }

    deinit {
        if let readEvent { event_free(readEvent) }
        if let writeEvent { event_free(writeEvent) }
    }

    /// Writes pending output now. Arms the write event if the socket is full.
    public func flush() {
        guard !isClosed, !isConnecting else { return }
        while !output.isEmpty {
            let pending = output.readableCount
            switch write(output.readableBytes) {
            case .transferred(let written):
                output.consume(written)
                // A short write means the socket buffer is full; wait for room.
                // (TLS writes one record at a time: go on until it blocks.)
                if written < pending && tls == nil { armWrite(); return }
            case .wouldBlock:
                armWrite()
                return
            case .endOfFile:
                close()
                return
            case .failed(let error):
                close(error: error)
                return
            }
        }
        if writeArmed && !drainNoticeWanted {
            writeArmed = false
            if let writeEvent { event_del(writeEvent) }
        }
        if output.allocatedCapacity > Connection.retainedCapacity { output.shrink(to: Connection.readChunk) }
        if closeWhenDrained { close() } else if lingering { endLinger() }
    }

    /// Stops reading from the socket, e.g. while output is backed up.
    public func pauseReading() {
        guard !readingPaused, !isClosed else { return }
        readingPaused = true
        if let readEvent { event_del(readEvent) }
    }

    public func resumeReading() {
        guard readingPaused, !isClosed, !inputEnded else { return }
        readingPaused = false
        if let readEvent { event_add(readEvent, nil) } else { embeddedPeer?.readingResumed() }
        readAgainIfTLSHoldsInput()
    }

    public var isReadingPaused: Bool { readingPaused }
    /// The peer half-closed: nothing more will be read.
    public private(set) var inputEnded = false

    /// Asks for `connectionDrained` once the socket can take more bytes, even
    /// with nothing pending: a reply produced as the socket drains carries on
    /// from the next loop iteration instead of starving other connections.
    public func notifyWhenWritable() {
        guard !isClosed else { return }
        drainNoticeWanted = true
        armWrite()
    }
    /// True while output waits for the socket to accept more bytes.
    public var isWaitingForWritable: Bool { writeArmed }

    /// Writes what is pending, then closes.
    public func closeAfterFlush() {
        closeWhenDrained = true
        pauseReading()
        flush()
    }

    /// Ends the connection without losing replies (a server shutting down):
    /// writes what is pending, then half-closes; what the peer still sends is
    /// read and dropped until it closes too, or until the caller closes. Closing
    /// with unread input would reset the connection instead, and a reset can
    /// destroy replies the peer has not read yet. With nothing to write and
    /// nothing unread, closes at once.
    public func closeGracefully() {
        guard !isClosed, !lingering else { return }
        lingering = true
        input.removeAll()
        if readingPaused && !inputEnded {
            readingPaused = false
            if let readEvent { event_add(readEvent, nil) }
        }
        flush()
    }

    /// Reads what the peer has already sent (what the kernel holds for this
    /// socket, up to `limit` bytes) into `input`, without telling the handler,
    /// then stops reading: a server shutting down answers what reached it
    /// before it stopped, and nothing after.
    public func stopReadingAfterWhatArrived(limit: Int = Connection.shutdownReadLimit) {
        defer { pauseReading() }
        guard !isClosed, !inputEnded else { return }
        // Under TLS what arrived may already sit in OpenSSL's read-ahead buffer.
        let buffered = tls?.hasPending == true ? Connection.readChunk : 0
        let wanted = min(unreadCount + buffered, limit)
        guard wanted > 0 else { return }
        input.reserveWritable(wanted)
        let space = UnsafeMutableRawBufferPointer(rebasing: input.writableSpace[0..<wanted])
        if case .transferred(let count) = read(into: space) {
            input.commitWritten(count)
            if let tls { _ = readBuffered(tls, upTo: wanted - count) }
        }
    }

    /// At shutdown, at most this much already-sent input is still read.
    public static let shutdownReadLimit = 4 << 20

    /// After `closeGracefully`, once the output is written: half-close, or
    /// close when the peer has nothing more in flight.
    private func endLinger() {
        guard !outputShutDown else { return }
        if inputEnded || (unreadCount == 0 && tls?.hasPending != true) { return close() }
        outputShutDown = true
        if let embeddedPeer { embeddedPeer.outputEnded = true } else { shutdown(fd, Int32(SHUT_WR)) }
    }

    /// Closes the socket now and tells the handler. Safe to call more than once.
    public func close() { close(error: 0) }

    /// Closes with a reset instead of an orderly shutdown: the peer's kernel drops
    /// what it has not read yet (a node cut off from the proxy must not apply
    /// writes that were queued before it was marked down).
    public func abort() {
        guard !isClosed else { return }
        if let embeddedPeer {
            embeddedPeer.wasReset = true
        } else {
            var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        }
        close(error: 0)
    }

    /// The far end of an embedded connection reset it.
    func closedByPeer(errno: Int32) { close(error: errno) }

    private func close(error: Int32) {
        guard !isClosed else { return }
        isClosed = true
        closeError = error
        if let embeddedPeer {
            embeddedPeer.isClosed = true
        } else {
            event_del(readEvent)
            event_del(writeEvent)
            tls?.shutdown()
            Glibc.close(fd)
        }
        let handler = self.handler
        self.handler = nil
        handler?.connectionClosed(self)
        // Balances the retain taken in init.
        Unmanaged.passUnretained(self).release()
    }

    private func armWrite() {
        guard !writeArmed else { return }
        writeArmed = true
        if let writeEvent { event_add(writeEvent, nil) }
    }

    // MARK: The socket, or the embedded peer

    private func write(_ bytes: UnsafeRawBufferPointer) -> IOResult {
        if let embeddedPeer { return embeddedPeer.take(bytes) }
        if let tls { return tls.write(bytes) }
        return NonBlockingIO.write(fd, bytes)
    }

    private func read(into space: UnsafeMutableRawBufferPointer) -> IOResult {
        if let embeddedPeer { return embeddedPeer.give(into: space) }
        if let tls { return tls.read(into: space) }
        return NonBlockingIO.read(fd, into: space)
    }

    /// Bytes the peer sent that are not read yet.
    private var unreadCount: Int {
        if let embeddedPeer { return embeddedPeer.unsent.count }
        var unread: Int32 = 0
        return ioctl(fd, UInt(FIONREAD), &unread) == 0 ? Int(unread) : 0
    }

    /// An SSL_read gives one record; the records OpenSSL has already taken
    /// from the socket (it reads ahead) are read now, up to the buffer's room
    /// and `limit` bytes, so a pipelined batch is answered in one pass, as in
    /// plain text.
    private func readBuffered(_ tls: TLSStream, upTo limit: Int = .max) -> Int {
        var total = 0
        while tls.hasPending && total < limit && input.writableCount > 0 {
            let room = min(input.writableCount, limit - total)
            // Anything else (the end, an error) is met again on the next read event.
            guard case .transferred(let count) = tls.read(into: UnsafeMutableRawBufferPointer(
                rebasing: input.writableSpace[0..<room])) else { break }
            input.commitWritten(count)
            total += count
        }
        if tls.readNeedsWritable { armWrite() }
        return total
    }

    /// Bytes OpenSSL already took from the socket raise no socket event: while
    /// reading is on, have the loop call `handleReadable` for them.
    private func readAgainIfTLSHoldsInput() {
        guard let tls, let readEvent, !isClosed, !readingPaused, !lingering, tls.hasPending else { return }
        event_active(readEvent, Int32(EV_READ), 0)
    }

    func handleReadable() {
        if tlsUnavailable { return close(error: ENOMEM) }
        if lingering { return dropInput() }
        // A TLS write that waited for the peer's bytes (a key update) goes on first.
        if let tls, tls.writeNeedsReadable { flush() }
        if input.writableCount < Connection.readChunk / 4 { input.reserveWritable(Connection.readChunk) }
        switch read(into: input.writableSpace) {
        case .transferred(var count):
            input.commitWritten(count)
            if let tls { count += readBuffered(tls) }
            lastReadCount = count
            guard expectedFirst == nil || consumeExpectedFirst() else { return }
            handler?.connectionReadable(self)
            if !isClosed && !output.isEmpty && !writeArmed { flush() }
            if !isClosed && input.isEmpty && input.allocatedCapacity > Connection.retainedCapacity {
                input.shrink(to: Connection.readChunk)
            }
            readAgainIfTLSHoldsInput()
        case .wouldBlock:
            // A TLS read (the handshake) that must write first waits for room.
            if let tls, tls.readNeedsWritable { armWrite() }
            return
        case .endOfFile:
            inputEnded = true
            pauseReading()
            handler?.connectionInputEnded(self)
        case .failed(let error):
            close(error: error)
        }
    }

    /// Lingering: reads and drops what the peer sends, until it closes.
    private func dropInput() {
        input.removeAll()
        switch read(into: input.writableSpace) {
        case .transferred: input.removeAll()
        case .wouldBlock: return
        case .endOfFile: close()
        case .failed(let error): close(error: error)
        }
    }

    func handleWritable() {
        if isConnecting {
            let error = embeddedPeer?.connectError ?? Socket.pendingError(fd)
            if error != 0 { return close(error: error) }
            isConnecting = false
            if tlsUnavailable { return close(error: ENOMEM) }
            handler?.connectionEstablished(self)
            if isClosed { return }
        }
        drainNoticeWanted = false
        flush()
        if let tls, tls.readNeedsWritable, !isClosed {
            if output.isEmpty && writeArmed && !drainNoticeWanted {
                writeArmed = false
                if let writeEvent { event_del(writeEvent) }
            }
            handleReadable()
        }
        if !isClosed && output.isEmpty { handler?.connectionDrained(self) }
    }
}

// A handler may close the connection, which drops the connection's own
// reference; the extended lifetime keeps it valid until the callback returns.
private func connectionReadCallback(_ fd: Int32, _ what: Int16, _ context: UnsafeMutableRawPointer?) {
    let connection = Unmanaged<Connection>.fromOpaque(context!).takeUnretainedValue()
    withExtendedLifetime(connection) { connection.handleReadable() }
}

private func connectionWriteCallback(_ fd: Int32, _ what: Int16, _ context: UnsafeMutableRawPointer?) {
    let connection = Unmanaged<Connection>.fromOpaque(context!).takeUnretainedValue()
    withExtendedLifetime(connection) { connection.handleWritable() }
}
