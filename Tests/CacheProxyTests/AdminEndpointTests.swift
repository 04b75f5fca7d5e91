@testable import CacheProxy
import Glibc
import Testing

@Suite struct AdminConfigurationTests {
    @Test(arguments: [
        ("9150", HostPort(host: "127.0.0.1", port: 9150)),
        (":9150", HostPort(host: "127.0.0.1", port: 9150)),
        ("0.0.0.0:9150", HostPort(host: "0.0.0.0", port: 9150)),
        ("[::1]:9150", HostPort(host: "::1", port: 9150)),
        ("metrics.internal:9150", HostPort(host: "metrics.internal", port: 9150)),
    ])
    func aBarePortMeansLoopback(text: String, address: HostPort) {
        #expect(HostPort(adminAddress: text) == address)
    }

    @Test(arguments: ["", ":", "0", ":0", "99999", "host", "[::1"])
    func refusesBadAdminAddresses(text: String) {
        #expect(HostPort(adminAddress: text) == nil)
    }

    @Test func readsTheAdminOptions() throws {
        let bare = try ConfigurationFile.parse("metrics_listen: :9150\nnodes: [127.0.0.1:1]\n")
        #expect(bare.metricsListen == HostPort(host: "127.0.0.1", port: 9150))
        let port = try ConfigurationFile.parse("metrics_listen: 9150\nnodes: [127.0.0.1:1]\n")
        #expect(port.metricsListen == HostPort(host: "127.0.0.1", port: 9150))
        var overrides = ProxyOverrides()
        overrides.metrics = ":9151"
        #expect(try overrides.apply(to: bare).metricsListen == HostPort(host: "127.0.0.1", port: 9151))
    }

    @Test(arguments: [
        ("metrics_listen: 0\nnodes: [127.0.0.1:1]\n",
         "f.yaml:1: metrics_listen: expected host:port or a port (127.0.0.1), found '0'"),
    ])
    func refusesBadAdminOptions(text: String, message: String) {
        #expect(throws: ConfigurationError(message)) { try ConfigurationFile.parse(text, path: "f.yaml") }
    }
}

@Suite struct AdminRequestTests {
    func parse(_ text: String, limit: Int = 8192) -> AdminRequestHead.Outcome {
        Array(text.utf8).withUnsafeBytes { AdminRequestHead.parse($0, limit: limit) }
    }

    func head(_ text: String) throws -> AdminRequestHead {
        guard case .complete(let head) = parse(text) else {
            Issue.record("not a complete head: \(text.debugDescription)")
            throw CancellationError()
        }
        return head
    }

    func refusal(_ text: String, limit: Int = 8192) -> AdminResponse? {
        if case .refused(let response) = parse(text, limit: limit) { return response }
        return nil
    }

    @Test func parsesAHead() throws {
        let parsed = try head("POST /reload HTTP/1.1\r\nHost: 127.0.0.1:9150\r\nAuthorization:  Bearer abc \t\r\nX-Empty:\r\n\r\nleftover")
        #expect(parsed.method == "POST" && parsed.target == "/reload" && parsed.version == "HTTP/1.1")
        #expect(parsed.value("host") == "127.0.0.1:9150")
        #expect(parsed.value("authorization") == "Bearer abc")
        #expect(parsed.value("x-empty") == "")
        #expect(!parsed.declaresBody)
        #expect(try head("GET /metrics HTTP/1.0\n\n").fields.isEmpty)
        #expect(try head("POST /reload HTTP/1.0\r\nContent-Length: 000\r\n\r\n").declaresBody == false)
        #expect(try head("POST /reload HTTP/1.0\r\nContent-Length: 10\r\n\r\n").declaresBody)
        #expect(try head("POST /reload HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n").declaresBody)
    }

    @Test func waitsForTheRestOfAHead() {
        for text in ["", "GET /met", "GET /metrics HTTP/1.1\r\n", "GET /metrics HTTP/1.1\r\nHost: a\r\n", "GET /metrics HTTP/1.1\r\nHost: a\r\n\r"] {
            guard case .incomplete = parse(text) else {
                Issue.record("\(text.debugDescription) is not incomplete")
                continue
            }
        }
    }

    @Test func judgesTheRequestLineAtOnce() {
        #expect(refusal("stats\r\n") == .badRequest("malformed request line"))
        #expect(refusal("GET /metrics HTTP/3.0\r\n") == .versionNotSupported)
        #expect(refusal("GET /metrics HTTP/1.10\r\n") == .badRequest("malformed request line"))
        #expect(refusal("GET /metrics HTTP/x.y\r\n") == .badRequest("malformed request line"))
        #expect(refusal("G(T /metrics HTTP/1.1\r\n") == .badRequest("malformed request line"))
        #expect(refusal("GET /met\u{7F}rics HTTP/1.1\r\n") == .badRequest("malformed request line"))
    }

    @Test func capsTheHead() {
        let line = "GET /metrics HTTP/1.0\r\n"
        let exactly = line + "X: " + String(repeating: "a", count: 100 - line.utf8.count - 7) + "\r\n\r\n"
        #expect(exactly.utf8.count == 100)
        guard case .complete = parse(exactly, limit: 100) else {
            Issue.record("a head of exactly the limit is refused")
            return
        }
        #expect(refusal(exactly, limit: 99) == .headTooLarge)
        #expect(refusal(String(repeating: "G", count: 100), limit: 100) == .headTooLarge)
        #expect(refusal(line + String(repeating: "a", count: 100), limit: 100) == .headTooLarge)
    }

    @Test func refusesMalformedFields() {
        #expect(refusal("GET / HTTP/1.1\r\n\r\n") == .badRequest("HTTP/1.1 request without Host"))
        #expect(refusal("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n") == .badRequest("more than one host header"))
        #expect(refusal("GET / HTTP/1.0\r\nHost:\r\n\r\n") == .badRequest("malformed Host header"))
        #expect(refusal("GET / HTTP/1.0\r\nContent-Length: 1x\r\n\r\n") == .badRequest("malformed Content-Length header"))
        for line in ["NoColon", ": empty name", "Bad Name: x", " folded", "X: bare\rCR", "X: del\u{7F}"] {
            #expect(refusal("GET / HTTP/1.0\r\n\(line)\r\n\r\n") == .badRequest("malformed header line"), "\(line)")
        }
    }

    @Test func answersAreExact() {
        #expect(AdminResponse.methodNotAllowed(allow: "POST").encoded() == """
            HTTP/1.0 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 29\r\n\
            Allow: POST\r\nConnection: close\r\n\r\nmethod not allowed; use POST\n
            """)
        #expect(AdminResponse.methodNotAllowed(allow: "GET").encoded(withBody: false).hasSuffix("Connection: close\r\n\r\n"))
        let busy = MetricsEndpoint.busy
        let busyText = String(decoding: UnsafeRawBufferPointer(start: busy.utf8Start, count: busy.utf8CodeUnitCount), as: UTF8.self)
        let answer = AdminResponse(status: "503 Service Unavailable", body: "too many admin connections\n")
        #expect(busyText == answer.encoded())
    }
}
