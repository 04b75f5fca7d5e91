/// One answer of the admin endpoint: a status, plain text, and the headers a
/// refusal needs (`Allow`, `WWW-Authenticate`). Always `Connection: close`.
struct AdminResponse: Equatable {
    var status: String
    var body: String
    var contentType = "text/plain; charset=utf-8"
    /// Extra header lines, e.g. `Allow: GET`.
    var fields: [String] = []

    /// The bytes sent. HTTP/1.0 whatever the request said: one answer, then close.
    func encoded(withBody: Bool = true) -> String {
        var head = "HTTP/1.0 \(status)\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.utf8.count)\r\n"
        for field in fields { head += field + "\r\n" }
        return head + "Connection: close\r\n\r\n" + (withBody ? body : "")
    }

    static func ok(_ body: String, contentType: String = "text/plain; charset=utf-8") -> AdminResponse {
        AdminResponse(status: "200 OK", body: body, contentType: contentType)
    }

    static func badRequest(_ reason: String) -> AdminResponse {
        AdminResponse(status: "400 Bad Request", body: reason + "\n")
    }

    static let unauthorized = AdminResponse(
        status: "401 Unauthorized", body: "this request needs Authorization: Bearer <admin_token>\n",
        fields: ["WWW-Authenticate: Bearer realm=\"memcluster-proxy\""])

    static let wrongToken = AdminResponse(
        status: "401 Unauthorized", body: "wrong admin token\n",
        fields: ["WWW-Authenticate: Bearer realm=\"memcluster-proxy\", error=\"invalid_token\""])

    static func forbidden(_ reason: String) -> AdminResponse {
        AdminResponse(status: "403 Forbidden", body: reason + "\n")
    }

    static let notFound = AdminResponse(status: "404 Not Found",
                                        body: "GET /metrics, /health or /ready, or POST /reload or /rebalance\n")

    static func conflict(_ reason: String) -> AdminResponse {
        AdminResponse(status: "409 Conflict", body: reason + "\n")
    }

    static func unavailable(_ reason: String) -> AdminResponse {
        AdminResponse(status: "503 Service Unavailable", body: reason)
    }

    static func methodNotAllowed(allow: String) -> AdminResponse {
        AdminResponse(status: "405 Method Not Allowed", body: "method not allowed; use \(allow)\n", fields: ["Allow: \(allow)"])
    }

    static let unsupportedMediaType = AdminResponse(
        status: "415 Unsupported Media Type", body: "a POST here takes no body and no Content-Type (curl -X POST)\n")

    static let headTooLarge = AdminResponse(
        status: "431 Request Header Fields Too Large", body: "request head over \(MetricsEndpoint.headLimit / 1024) KiB\n")

    static let versionNotSupported = AdminResponse(
        status: "505 HTTP Version Not Supported", body: "HTTP/1.0 or HTTP/1.1 only\n")
}
