import CLibevent
import Glibc

/// An IPv4 or IPv6 address and port, resolved once at start-up.
public struct SocketAddress: Sendable, CustomStringConvertible {
    public let host: String
    public let port: UInt16
    @usableFromInline let storage: sockaddr_storage
    @usableFromInline let length: socklen_t

    /// Resolves `host` numerically first, then through getaddrinfo (for `localhost`).
    public init(host: String, port: UInt16) throws(SystemCallError) {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &result)
        guard status == 0, let first = result else {
            throw SystemCallError("getaddrinfo(\(host))", errno: status == EAI_SYSTEM ? errno : EINVAL)
        }
        defer { freeaddrinfo(result) }
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { raw in
            raw.baseAddress!.copyMemory(from: first.pointee.ai_addr, byteCount: Int(first.pointee.ai_addrlen))
        }
        self.host = host
        self.port = port
        self.storage = storage
        self.length = first.pointee.ai_addrlen
    }

    public var family: Int32 { Int32(storage.ss_family) }

    /// Every address `host` resolves to, as numeric `host:port` text
    /// (`127.0.0.1:11211`, `[::1]:11211`): what tells two spellings of one
    /// node apart from two nodes. Empty when `host` does not resolve.
    public static func resolvedForms(host: String, port: UInt16) -> Set<String> {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &result) == 0 else { return [] }
        defer { freeaddrinfo(result) }
        var forms: Set<String> = []
        var entry = result
        while let current = entry {
            var name = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(current.pointee.ai_addr, current.pointee.ai_addrlen, &name, socklen_t(name.count), nil, 0,
                           NI_NUMERICHOST) == 0 {
                let text = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                forms.insert(current.pointee.ai_family == AF_INET6 ? "[\(text)]:\(port)" : "\(text):\(port)")
            }
            entry = current.pointee.ai_next
        }
        return forms
    }

    public var description: String {
        family == AF_INET6 ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    @inlinable
    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        withUnsafeBytes(of: storage) { raw in
            body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), length)
        }
    }
}

/// Socket set-up calls. Every socket is close-on-exec (a crashing process's
/// backtracer must not inherit a listening port) and non-blocking.
public enum Socket {
    /// A listening TCP socket bound to `address`.
    public static func listen(on address: SocketAddress, backlog: Int32) throws(SystemCallError) -> Int32 {
        let fd = try retryingSystemCall("socket") {
            socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        do throws(SystemCallError) {
            try setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
            if address.family == AF_INET6 { try setOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1) }
            let bound = address.withSockaddr { pointer, length in bind(fd, pointer, length) }
            if bound != 0 { throw SystemCallError("bind(\(address))", errno: errno) }
            try retryingSystemCall("listen(\(address))") { Glibc.listen(fd, backlog) }
        } catch {
            close(fd)
            throw error
        }
        return fd
    }

    /// Accepts one pending connection, or nil when none is waiting.
    public static func accept(from listener: Int32) throws(SystemCallError) -> Int32? {
        while true {
            let fd = memcluster_accept(listener)
            if fd >= 0 { return fd }
            let error = errno
            switch error {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK, ECONNABORTED: return nil
            default: throw SystemCallError("accept4", errno: error)
            }
        }
    }

    /// Turns away an accepted connection over the limit as memcached does: one
    /// line saying why, then close (best effort; the socket is new and empty).
    public static func refuse(_ fd: Int32, reason: StaticString = "ERROR Too many open connections\r\n") {
        _ = Glibc.write(fd, reason.utf8Start, reason.utf8CodeUnitCount)
        Glibc.close(fd)
    }

    /// Starts a non-blocking connect; the socket becomes writable once it completes.
    public static func connect(to address: SocketAddress) throws(SystemCallError) -> Int32 {
        let fd = try retryingSystemCall("socket") {
            socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        let result = address.withSockaddr { pointer, length in Glibc.connect(fd, pointer, length) }
        if result != 0 && errno != EINPROGRESS {
            let error = errno
            close(fd)
            throw SystemCallError("connect(\(address))", errno: error)
        }
        try? setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
        return fd
    }

    /// The error a finished non-blocking connect left on the socket (0 on success).
    public static func pendingError(_ fd: Int32) -> Int32 {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &value, &length) != 0 { return errno }
        return value
    }

    public static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) throws(SystemCallError) {
        var value = value
        try retryingSystemCall("setsockopt") {
            setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    /// The local port a socket is bound to (for listeners on port 0).
    public static func localPort(_ fd: Int32) -> UInt16? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutableBytes(of: &storage) { raw in
            getsockname(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length) == 0
        }
        guard ok else { return nil }
        return withUnsafeBytes(of: storage) { raw in
            if Int32(storage.ss_family) == AF_INET6 {
                return UInt16(bigEndian: raw.load(as: sockaddr_in6.self).sin6_port)
            }
            return UInt16(bigEndian: raw.load(as: sockaddr_in.self).sin_port)
        }
    }

    /// The peer's address as `host:port`, for `stats conns` and logs.
    public static func peerName(_ fd: Int32) -> String {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutableBytes(of: &storage) { raw in
            getpeername(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length) == 0
        }
        guard ok else { return "unknown" }
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        var service = [CChar](repeating: 0, count: Int(NI_MAXSERV))
        let status = withUnsafeBytes(of: storage) { raw in
            getnameinfo(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), length, &host, socklen_t(host.count), &service, socklen_t(service.count), NI_NUMERICHOST | NI_NUMERICSERV)
        }
        guard status == 0 else { return "unknown" }
        let hostText = String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let serviceText = String(decoding: service.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return Int32(storage.ss_family) == AF_INET6 ? "[\(hostText)]:\(serviceText)" : "\(hostText):\(serviceText)"
    }
}
