import EventLoop
import Glibc

/// One `POST <path>` to a proxy's admin endpoint (`metrics_listen`), as
/// `memcluster-admin rebalance` sends it: no body, the admin token as a
/// bearer token, the whole exchange within a deadline.
public enum AdminPost {
    public struct Answer: Sendable {
        public let status: Int
        public let body: String
    }

    public enum Failure: Error, CustomStringConvertible {
        case unreachable(String)
        case timedOut
        case malformed

        public var description: String {
            switch self {
            case .unreachable(let reason): return "cannot connect: \(reason)"
            case .timedOut: return "no answer in time"
            case .malformed: return "the answer is not HTTP"
            }
        }
    }

    public static func send(_ path: String, to endpoint: HostPort, token: AdminToken?,
                            timeoutMilliseconds: Int = 5000) -> Result<Answer, Failure> {
        let fd: Int32
        do {
            fd = try Socket.connect(to: try SocketAddress(host: endpoint.host, port: endpoint.port))
        } catch {
            return .failure(.unreachable("\(error)"))
        }
        defer { close(fd) }
        let deadline = monotonicMilliseconds() + Int64(timeoutMilliseconds)
        var request = "POST \(path) HTTP/1.0\r\nHost: \(endpoint)\r\nContent-Length: 0\r\n"
        if let token { request += "Authorization: Bearer \(token.bearerValue)\r\n" }
        request += "\r\n"
        var unsent = Array(request.utf8)[...]
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let left = deadline - monotonicMilliseconds()
            guard left > 0 else { return .failure(.timedOut) }
            var poller = pollfd(fd: fd, events: Int16(unsent.isEmpty ? POLLIN : POLLOUT), revents: 0)
            guard poll(&poller, 1, Int32(left)) > 0 else { return .failure(.timedOut) }
            if !unsent.isEmpty {
                if let problem = pendingProblem(fd) { return .failure(.unreachable(problem)) }
                let count = unsent.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                if count > 0 { unsent = unsent.dropFirst(count) } else if errno != EAGAIN && errno != EINTR {
                    return .failure(.unreachable(String(cString: strerror(errno))))
                }
                continue
            }
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count > 0 {
                received += buffer[..<count]
            } else if count == 0 {
                break
            } else if errno != EAGAIN && errno != EINTR {
                return .failure(.unreachable(String(cString: strerror(errno))))
            }
        }
        return parse(received).map { .success($0) } ?? .failure(.malformed)
    }

    private static func pendingProblem(_ fd: Int32) -> String? {
        let error = Socket.pendingError(fd)
        return error == 0 ? nil : String(cString: strerror(error))
    }

    /// `HTTP/1.x <status> ...`, headers, an empty line, the body.
    static func parse(_ bytes: [UInt8]) -> Answer? {
        let text = String(decoding: bytes, as: UTF8.self)
        guard text.hasPrefix("HTTP/1."), let headEnd = text.range(of: "\r\n\r\n") else { return nil }
        let statusLine = text[..<(text.range(of: "\r\n")?.lowerBound ?? headEnd.lowerBound)]
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else { return nil }
        return Answer(status: status, body: String(text[headEnd.upperBound...]))
    }
}
