import Buffers
import EventLoop
import Glibc
import Synchronization
import Testing

/// Echoes every byte back, upper-cased, so the test can tell it went through the handler.
private final class EchoHandler: ConnectionHandler, @unchecked Sendable {
    let closed = Atomic<Bool>(false)

    func connectionReadable(_ connection: Connection) {
        let input = connection.input.readableBytes
        for byte in input {
            let upper = byte >= 97 && byte <= 122 ? byte - 32 : byte
            connection.output.append(byte: upper)
        }
        connection.input.consume(input.count)
    }

    func connectionDrained(_ connection: Connection) {}
    func connectionClosed(_ connection: Connection) { closed.store(true, ordering: .relaxed) }
}

private final class Box<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}

/// Blocking client helpers for talking to a loop from the test thread.
private enum Client {
    static func connect(port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(result == 0)
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    static func send(_ fd: Int32, _ text: String) {
        var text = text
        text.withUTF8 { _ = write(fd, $0.baseAddress, $0.count) }
    }

    static func receive(_ fd: Int32, count: Int) -> String {
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while received.count < count {
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { break }
            received += chunk[0..<n]
        }
        return String(decoding: received, as: UTF8.self)
    }
}

@Suite struct EventLoopTests {
    @Test func runsTasksQueuedFromOtherThreads() async throws {
        let loop = try EventLoopThread.start(name: "test-loop")
        defer { loop.stop() }
        let counter = Atomic<Int>(0)
        for _ in 0..<1000 { loop.execute { counter.wrappingAdd(1, ordering: .relaxed) } }
        let done = Atomic<Bool>(false)
        loop.execute { done.store(true, ordering: .releasing) }
        for _ in 0..<500 where !done.load(ordering: .acquiring) { try await Task.sleep(for: .milliseconds(10)) }
        #expect(counter.load(ordering: .relaxed) == 1000)
    }

    @Test func firesTimersOnTheLoop() async throws {
        let loop = try EventLoopThread.start(name: "test-timer")
        defer { loop.stop() }
        let fired = Atomic<Int>(0)
        let timerBox = Box<EventTimer?>(nil)
        loop.execute {
            let timer = EventTimer(loop: loop, milliseconds: 5, repeating: true) { fired.wrappingAdd(1, ordering: .relaxed) }
            timer.start()
            timerBox.value = timer
        }
        for _ in 0..<500 where fired.load(ordering: .relaxed) < 3 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(fired.load(ordering: .relaxed) >= 3)
        loop.execute { timerBox.value?.stop(); timerBox.value = nil }
    }

    @Test func firesSubMillisecondOneShotTimersOnAPreciseLoop() async throws {
        let loop = try EventLoop(preciseTimers: true)
        let thread = Task.detached { loop.run() }
        defer { loop.stop() }
        let fired = Atomic<Int>(0)
        let timerBox = Box<EventTimer?>(nil)
        loop.execute {
            let timer = EventTimer(loop: loop, milliseconds: 0, repeating: false) {
                if fired.add(1, ordering: .relaxed).newValue < 3 { timerBox.value?.start(afterMicroseconds: 200) }
            }
            timer.start(afterMicroseconds: 200)
            timerBox.value = timer
        }
        for _ in 0..<500 where fired.load(ordering: .relaxed) < 3 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(fired.load(ordering: .relaxed) == 3)
        loop.execute { timerBox.value = nil }
        loop.stop()
        await thread.value
    }

    @Test func servesConnectionsThroughAHandler() async throws {
        let loop = try EventLoopThread.start(name: "test-echo")
        defer { loop.stop() }
        let address = try SocketAddress(host: "127.0.0.1", port: 0)
        let listenFD = try Socket.listen(on: address, backlog: 16)
        let port = try #require(Socket.localPort(listenFD))
        let handler = EchoHandler()
        let listenerBox = Box<Listener?>(nil)
        loop.execute {
            listenerBox.value = Listener(fd: listenFD, loop: loop) { fd in
                _ = Connection(fd: fd, loop: loop, handler: handler)
            }
        }

        let client = try Client.connect(port: port)
        Client.send(client, "hello, ")
        #expect(Client.receive(client, count: 7) == "HELLO, ")
        // A reply much larger than a socket buffer arrives whole and in order.
        let large = String(repeating: "abcdefgh", count: 200_000)
        let reader = Task.detached { Client.receive(client, count: large.utf8.count) }
        Client.send(client, large)
        #expect(await reader.value == large.uppercased())
        close(client)
        for _ in 0..<500 where !handler.closed.load(ordering: .relaxed) { try await Task.sleep(for: .milliseconds(10)) }
        let closed = handler.closed.load(ordering: .relaxed)
        #expect(closed)
        loop.execute { listenerBox.value = nil }
    }

    @Test func resolvesAddresses() throws {
        let v4 = try SocketAddress(host: "127.0.0.1", port: 11211)
        #expect(v4.description == "127.0.0.1:11211")
        let v6 = try SocketAddress(host: "::1", port: 11211)
        #expect(v6.description == "[::1]:11211")
        #expect(throws: SystemCallError.self) { try SocketAddress(host: "no such host.invalid", port: 1) }
    }
}
