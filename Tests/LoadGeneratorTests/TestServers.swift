import EventLoop
import Foundation
import Glibc
import Synchronization
@testable import LoadGenerator

/// A real memcached on a free loopback port, stopped by its pid.
///
/// Spawned with posix_spawn and an empty signal mask: Foundation's Process would
/// hand it the blocked signals of the Swift Testing worker thread that starts it,
/// and a memcached with SIGTERM blocked never stops.
final class MemcachedProcess {
    static let path = "/usr/bin/memcached"
    static var isInstalled: Bool { access(path, X_OK) == 0 }

    let pid: pid_t
    let port: UInt16
    var address: ServerAddress { ServerAddress(host: "127.0.0.1", port: port) }

    init() throws {
        port = try freeLoopbackPort()
        // -u root: memcached refuses to run as root without it (and ignores it otherwise).
        let arguments = [MemcachedProcess.path, "-u", "root", "-l", "127.0.0.1", "-p", "\(port)", "-U", "0", "-t", "1", "-m", "64"]
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        var child = pid_t()
        let status = posix_spawn(&child, MemcachedProcess.path, nil, &attributes, &argv, environ)
        guard status == 0 else { throw LoadGeneratorError("posix_spawn memcached: \(String(cString: strerror(status)))") }
        pid = child
        for _ in 0..<300 {
            if canConnect(port: port) { return }
            usleep(10_000)
        }
        stop()
        throw LoadGeneratorError("memcached did not start listening on port \(port)")
    }

    func stop() {
        // SIGKILL: memcached notices SIGTERM only on its once-a-second clock tick, and
        // a test server has nothing to save.
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }
}

/// A port nothing listens on right now (bound to 0, read back, closed).
func freeLoopbackPort() throws -> UInt16 {
    let fd = try Socket.listen(on: try SocketAddress(host: "127.0.0.1", port: 0), backlog: 1)
    defer { close(fd) }
    guard let port = Socket.localPort(fd) else { throw LoadGeneratorError("no local port") }
    return port
}

func canConnect(port: UInt16) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}

/// A scripted server on its own thread: accepts connections and answers every
/// request line by calling `reply` (raw bytes). For error paths memcached never takes.
final class FakeServer: @unchecked Sendable {
    let listenFD: Int32
    let port: UInt16
    private let reply: @Sendable (String) -> String?

    init(reply: @escaping @Sendable (String) -> String?) throws {
        listenFD = try Socket.listen(on: try SocketAddress(host: "127.0.0.1", port: 0), backlog: 64)
        port = Socket.localPort(listenFD)!
        self.reply = reply
        // The listener is non-blocking; each accepted socket is served on its own thread.
        Thread.detachNewThread { [self] in self.acceptLoop() }
    }

    private func acceptLoop() {
        while true {
            var pollFD = pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)
            if poll(&pollFD, 1, 100) < 0 { return }
            guard let fd = try? Socket.accept(from: listenFD) else { return }
            let reply = self.reply
            Thread.detachNewThread { FakeServer.serve(fd, reply) }
        }
    }

    private static func serve(_ fd: Int32, _ reply: @Sendable (String) -> String?) {
        defer { close(fd) }
        var pending: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            var pollFD = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pollFD, 1, 5000) > 0 else { return }
            let count = read(fd, &chunk, chunk.count)
            guard count > 0 else { return }
            pending += chunk[0..<count]
            while let newline = pending.firstIndex(of: 0x0A) {
                let line = String(decoding: pending[..<newline], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                pending.removeSubrange(...newline)
                guard let answer = reply(line) else { return }
                var bytes = Array(answer.utf8)
                _ = write(fd, &bytes, bytes.count)
            }
        }
    }
}

final class Counter: Sendable {
    private let value = Atomic<Int>(0)
    /// The count after this call.
    func increment() -> Int { value.add(1, ordering: .relaxed).newValue }
}
