import CLibevent
import Glibc

/// A non-blocking UDP socket connected to one peer (the proxy's DNS server),
/// with a read event on a loop. Connected, so the kernel keeps datagrams from
/// any other address out, and an ICMP "port unreachable" from the peer shows up
/// as ECONNREFUSED on the next receive instead of a silent timeout. Loop
/// thread only; `close()` (or deinit) releases the socket and its event.
public final class DatagramSocket {
    public let fd: Int32
    private var event: OpaquePointer?
    private let onReadable: () -> Void
    public private(set) var isClosed = false

    /// Opens a socket of `peer`'s family, connects it to `peer` (which only
    /// sets the default destination: no packet is sent) and starts watching it.
    public init(connectedTo peer: SocketAddress, loop: EventLoop, onReadable: @escaping () -> Void) throws(SystemCallError) {
        let fd = try retryingSystemCall("socket") {
            socket(peer.family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        let connected = peer.withSockaddr { pointer, length in Glibc.connect(fd, pointer, length) }
        if connected != 0 {
            let error = errno
            Glibc.close(fd)
            throw SystemCallError("connect(\(peer))", errno: error)
        }
        self.fd = fd
        self.onReadable = onReadable
        // The socket outlives its event (freed in deinit), so the context is unretained.
        event = event_new(loop.base, fd, Int16(EV_READ | EV_PERSIST), datagramSocketCallback,
                          Unmanaged.passUnretained(self).toOpaque())
        event_add(event, nil)
    }

    deinit {
        close()
        // Freed here, not in close(): close() may run inside this event's own callback.
        if let event { event_free(event) }
    }

    /// Sends one datagram.
    public func send(_ bytes: UnsafeRawBufferPointer) -> IOResult {
        guard !isClosed else { return .failed(errno: EBADF) }
        return NonBlockingIO.write(fd, bytes)
    }

    /// Receives one datagram into `buffer`: its length, or `.truncated` when it
    /// was longer than `buffer` (the rest is lost; the caller must not read a
    /// cut message as a whole one).
    public func receive(into buffer: UnsafeMutableRawBufferPointer) -> DatagramResult {
        guard !isClosed else { return .failed(errno: EBADF) }
        while true {
            // MSG_TRUNC: the datagram's real length, even past the buffer.
            let n = recv(fd, buffer.baseAddress, buffer.count, Int32(MSG_TRUNC))
            if n >= 0 { return n > buffer.count ? .truncated : .received(n) }
            let error = errno
            if error == EINTR { continue }
            if error == EAGAIN || error == EWOULDBLOCK { return .wouldBlock }
            return .failed(errno: error)
        }
    }

    public func close() {
        guard !isClosed else { return }
        isClosed = true
        if let event { event_del(event) }
        Glibc.close(fd)
    }

    fileprivate func readable() { onReadable() }
}

/// What one `DatagramSocket.receive` got.
public enum DatagramResult: Equatable, Sendable {
    case received(Int)
    /// The datagram did not fit the buffer.
    case truncated
    case wouldBlock
    case failed(errno: Int32)
}

private func datagramSocketCallback(_ fd: Int32, _ what: Int16, _ context: UnsafeMutableRawPointer?) {
    let socket = Unmanaged<DatagramSocket>.fromOpaque(context!).takeUnretainedValue()
    // The callback may close (and its owner release) the socket.
    withExtendedLifetime(socket) { socket.readable() }
}
