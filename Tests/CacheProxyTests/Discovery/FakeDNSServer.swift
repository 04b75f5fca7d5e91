@testable import CacheProxy
import EventLoop
import Glibc
import Testing

/// A DNS server on the test's own loop: a UDP socket polled every 2 ms and a
/// TCP listener on the same port, each answering with what the test says.
final class FakeDNSServer {
    let port: UInt16
    private let fd: Int32
    private var poll: EventTimer?
    private var listener: Listener?
    private var streams: [StreamAnswerer] = []
    /// Datagrams to send back for each query datagram (none: it is lost).
    var answer: ([UInt8]) -> [[UInt8]] = { _ in [] }
    /// The answer to a query over TCP.
    var streamAnswer: ([UInt8]) -> [UInt8] = { _ in [] }
    private(set) var datagramsSeen = 0
    private(set) var streamsSeen = 0

    init(loop: EventLoop) throws {
        // TCP first on a free port, then UDP on the same number (free far more often).
        let tcp = try Socket.listen(on: SocketAddress(host: "127.0.0.1", port: 0), backlog: 8)
        port = Socket.localPort(tcp)!
        fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        try #require(bindLoopback(fd, port: port) == port)
        listener = Listener(fd: tcp, loop: loop) { [unowned self] client in
            streamsSeen += 1
            let answerer = StreamAnswerer(answer: streamAnswer)
            streams.append(answerer)
            _ = Connection(fd: client, loop: loop, handler: answerer)
        }
        let poll = EventTimer(loop: loop, milliseconds: 2, repeating: true) { [unowned self] in receive() }
        poll.start()
        self.poll = poll
    }

    deinit {
        poll?.stop()
        close(fd)
    }

    private func receive() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        var peer = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        while true {
            let count = withUnsafeMutableBytes(of: &peer) { raw in
                recvfrom(fd, &buffer, buffer.count, 0, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length)
            }
            guard count > 0 else { return }
            datagramsSeen += 1
            for reply in answer(Array(buffer[0..<count])) {
                _ = withUnsafeBytes(of: &peer) { raw in
                    sendto(fd, reply, reply.count, 0, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), length)
                }
            }
        }
    }

    private final class StreamAnswerer: ConnectionHandler {
        let answer: ([UInt8]) -> [UInt8]
        init(answer: @escaping ([UInt8]) -> [UInt8]) { self.answer = answer }

        func connectionReadable(_ connection: Connection) {
            let bytes = Array(connection.input.readableBytes)
            guard bytes.count >= 2, bytes.count >= 2 + (Int(bytes[0]) << 8 | Int(bytes[1])) else { return }
            let reply = answer(Array(bytes[2...]))
            let framed = [UInt8(reply.count >> 8), UInt8(reply.count & 0xFF)] + reply
            connection.input.removeAll()
            framed.withUnsafeBytes { connection.output.append($0) }
            connection.closeAfterFlush()
        }
        func connectionDrained(_ connection: Connection) {}
        func connectionClosed(_ connection: Connection) {}
    }
}

/// Binds `fd` to 127.0.0.1 on `port` (0: a free one); returns the port, or 0.
func bindLoopback(_ fd: Int32, port: UInt16 = 0) -> UInt16 {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    return bound == 0 ? Socket.localPort(fd) ?? 0 : 0
}

/// Keeps objects alive until the test ends.
final class Keeper {
    var objects: [AnyObject] = []
}

/// The answer to `query` (its id and question), with `count` A records.
func answer(to query: [UInt8], count: Int = 1, flags: UInt16 = 0) -> [UInt8] {
    let id = UInt16(query[0]) << 8 | UInt16(query[1])
    return DNSPacket.response(id: id, flags: flags, answers: UInt16(count)) { packet in
        for index in 0..<count { packet.a([10, 0, UInt8(index >> 8), UInt8(index & 0xFF)]) }
    }
}

/// Runs `body` on a fresh loop until it calls `done`, or 5 s pass.
func onLoop(_ body: (EventLoop, @escaping () -> Void) throws -> Void) throws {
    let loop = try EventLoop()
    let guardTimer = EventTimer(loop: loop, milliseconds: 5000, repeating: false) { loop.stop() }
    guardTimer.start()
    try body(loop) { loop.stop() }
    loop.run()
    guardTimer.stop()
}

