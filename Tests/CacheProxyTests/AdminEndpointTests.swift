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

    @Test func knowsLoopbackAddresses() {
        for host in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1", "localhost", "LocalHost"] {
            #expect(HostPort(host: host, port: 1).isLoopback, "\(host)")
        }
        for host in ["0.0.0.0", "::", "10.0.0.1", "128.0.0.1", "::2", "::ffff:10.0.0.1", "evil.example", "localhost.evil.example"] {
            #expect(!HostPort(host: host, port: 1).isLoopback, "\(host)")
        }
    }

    @Test func readsTheAdminOptions() throws {
        let bare = try ConfigurationFile.parse("metrics_listen: :9150\nnodes: [127.0.0.1:1]\n")
        #expect(bare.metricsListen == HostPort(host: "127.0.0.1", port: 9150))
        #expect(bare.adminToken == nil && bare.adminTokenFile == nil && !bare.adminTokenProtectsMetrics)
        let port = try ConfigurationFile.parse("metrics_listen: 9150\nadmin_token_file: secret/admin.token\nnodes: [127.0.0.1:1]\n")
        #expect(port.metricsListen == HostPort(host: "127.0.0.1", port: 9150))
        #expect(port.adminTokenFile == "secret/admin.token")
    }

    @Test(arguments: [
        ("admin_token: short\nnodes: [127.0.0.1:1]\n",
         "f.yaml:1: admin_token: expected 16 to 1024 printable ASCII characters without spaces"),
        ("admin_token: \"with a space inside\"\nnodes: [127.0.0.1:1]\n",
         "f.yaml:1: admin_token: expected 16 to 1024 printable ASCII characters without spaces"),
        ("admin_token: 0123456789abcdef\nadmin_token_file: t\nnodes: [127.0.0.1:1]\n",
         "f.yaml: admin_token and admin_token_file: give one of them (the file keeps the secret out of this one)"),
        ("metrics_listen: 0\nnodes: [127.0.0.1:1]\n",
         "f.yaml:1: metrics_listen: expected host:port or a port (127.0.0.1), found '0'"),
        ("admin_token_protects_metrics: maybe\nnodes: [127.0.0.1:1]\n",
         "f.yaml:1: admin_token_protects_metrics: expected true or false, found 'maybe'"),
    ])
    func refusesBadAdminOptions(text: String, message: String) {
        #expect(throws: ConfigurationError(message)) { try ConfigurationFile.parse(text, path: "f.yaml") }
    }

    @Test func protectingMetricsNeedsAToken() throws {
        let base = try ConfigurationFile.parse("admin_token_protects_metrics: true\nnodes: [127.0.0.1:1]\n")
        #expect(throws: ConfigurationError("admin_token_protects_metrics: needs admin_token or admin_token_file")) {
            try ProxyOverrides().apply(to: base)
        }
    }

    @Test func theTokenFileIsReadTrimmedAndTheFlagWins() throws {
        let directory = String(cString: mkdtemp(strdup("/tmp/admin-token-XXXXXX")))
        defer { _ = system("rm -rf '\(directory)'") }
        func write(_ name: String, _ text: String) {
            let file = fopen("\(directory)/\(name)", "w")!
            fputs(text, file)
            fclose(file)
        }
        write("proxy.yaml", "admin_token_file: file.token\nmetrics_listen: 9150\nnodes: [127.0.0.1:1]\n")
        write("file.token", "  0123456789abcdef-file\r\n\n")
        write("flag.token", "0123456789abcdef-flag")
        write("bad.token", "two tokens-0123456789\n")

        var overrides = ProxyOverrides()
        let fromFile = try overrides.load(path: "\(directory)/proxy.yaml")
        #expect(fromFile.adminTokenFile == "\(directory)/file.token")
        #expect(fromFile.adminToken == AdminToken("0123456789abcdef-file"))
        var dumped = ""
        dump(fromFile, to: &dumped)
        #expect(!"\(fromFile)".contains("0123456789abcdef") && !dumped.contains("0123456789abcdef"))
        #expect(!String(reflecting: fromFile).contains("0123456789abcdef"))

        overrides.adminTokenFile = "\(directory)/flag.token"
        #expect(try overrides.load(path: "\(directory)/proxy.yaml").adminToken == AdminToken("0123456789abcdef-flag"))
        overrides.metrics = ":9151"
        #expect(try overrides.load(path: "\(directory)/proxy.yaml").metricsListen == HostPort(host: "127.0.0.1", port: 9151))

        overrides.adminTokenFile = "\(directory)/bad.token"
        #expect(throws: ConfigurationError("admin token file \(directory)/bad.token: expected one token of 16 to 1024 printable ASCII characters without spaces")) {
            try overrides.load(path: "\(directory)/proxy.yaml")
        }
        overrides.adminTokenFile = "\(directory)/missing.token"
        #expect(throws: ConfigurationError("admin token file \(directory)/missing.token: cannot open: No such file or directory")) {
            try overrides.load(path: "\(directory)/proxy.yaml")
        }
    }

    @Test func aTokenMatchesOnlyItself() throws {
        let token = try #require(AdminToken("0123456789abcdef"))
        #expect(token.matches(Array("0123456789abcdef".utf8)))
        for other in ["0123456789abcdeF", "0123456789abcde", "0123456789abcdef0", "", "x0123456789abcdef"] {
            #expect(!token.matches(Array(other.utf8)), "\(other)")
        }
        #expect(AdminToken("0123456789abcde") == nil)
        #expect(AdminToken(String(repeating: "a", count: 1025)) == nil)
        #expect(AdminToken("0123456789abcdé0") == nil)
        #expect(token.description == "<admin token, 16 characters>")
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

@Suite struct AdminAccessTests {
    let loopback = AdminAccess(address: HostPort(host: "127.0.0.1", port: 9150))
    let wildcard = AdminAccess(address: HostPort(host: "0.0.0.0", port: 9150))

    func head(_ fields: [(String, String)], version: String = "HTTP/1.0") -> AdminRequestHead {
        AdminRequestHead(method: "POST", target: "/reload", version: version,
                         fields: fields.map { (name: $0.0.lowercased(), value: $0.1) })
    }

    @Test func sameOriginPasses() {
        #expect(loopback.crossOriginRefusal(head([])) == nil)
        #expect(loopback.crossOriginRefusal(head([("Host", "127.0.0.1:9150"), ("Origin", "http://127.0.0.1:9150")])) == nil)
        #expect(loopback.crossOriginRefusal(head([("Host", "LOCALHOST:9150"), ("Origin", "http://localhost:9150")])) == nil)
        #expect(loopback.crossOriginRefusal(head([("Origin", "http://127.0.0.1:9150"), ("Sec-Fetch-Site", "same-origin")])) == nil)
        #expect(loopback.crossOriginRefusal(head([("Host", "[::1]:9150"), ("Sec-Fetch-Site", "none")])) == nil)
        #expect(wildcard.crossOriginRefusal(head([("Host", "proxy1.internal:9150"), ("Origin", "http://proxy1.internal:9150")])) == nil)
        #expect(wildcard.crossOriginRefusal(head([("Host", "proxy1.internal")])) == nil)
    }

    @Test func otherOriginsAreRefused() {
        let refused = AdminResponse.forbidden("cross-origin request refused")
        for fields in [
            [("Origin", "http://evil.example")],
            [("Origin", "null")],
            [("Origin", "https://127.0.0.1:9150")],
            [("Origin", "http://127.0.0.1:9151")],
            [("Origin", "http://127.0.0.1")],
            [("Host", "127.0.0.1:9150"), ("Origin", "http://localhost:9150")],
            [("Sec-Fetch-Site", "cross-site")],
            [("Sec-Fetch-Site", "same-site")],
        ] {
            #expect(loopback.crossOriginRefusal(head(fields)) == refused, "\(fields)")
        }
        #expect(wildcard.crossOriginRefusal(head([("Host", "proxy1.internal:9150"), ("Origin", "http://evil.example")])) == refused)
    }

    @Test func aLoopbackEndpointAnswersOnlyLoopbackNames() {
        let rebinding = AdminResponse.forbidden("Host does not name this endpoint's loopback address")
        #expect(loopback.crossOriginRefusal(head([("Host", "evil.example:9150"), ("Origin", "http://evil.example:9150")])) == rebinding)
        #expect(loopback.crossOriginRefusal(head([("Host", "10.0.0.1:9150")])) == rebinding)
    }

    @Test func bearerTokens() throws {
        let token = try #require(AdminToken("0123456789abcdef"))
        #expect(AdminAccess.authorizationRefusal(head([("Authorization", "Bearer 0123456789abcdef")]), token: token) == nil)
        #expect(AdminAccess.authorizationRefusal(head([("Authorization", "bearer  0123456789abcdef")]), token: token) == nil)
        #expect(AdminAccess.authorizationRefusal(head([]), token: token) == .unauthorized)
        #expect(AdminAccess.authorizationRefusal(head([("Authorization", "Basic 0123456789abcdef")]), token: token) == .unauthorized)
        #expect(AdminAccess.authorizationRefusal(head([("Authorization", "Bearer 0123456789abcdeg")]), token: token) == .wrongToken)
        #expect(AdminAccess.authorizationRefusal(head([("Authorization", "Bearer")]), token: token) == .wrongToken)
    }
}
