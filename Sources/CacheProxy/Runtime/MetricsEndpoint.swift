import Buffers
import EventLoop
import Glibc

/// The proxy's admin endpoint (`metrics_listen`), on the main loop, for
/// operators and Prometheus. One request per connection, answered with
/// `Connection: close`:
///
///   GET  /metrics   Prometheus text format: the `stats` counters, latency
///                   histograms, per-node state
///   GET  /health    200 "ok" while the proxy runs (a liveness probe)
///   GET  /ready     200 "ready" while it can serve: at least one node up and
///                   not shutting down; 503 and why otherwise (a readiness probe)
///   POST /reload    reload the configuration (as SIGHUP); 200 "OK" (naming any
///                   setting only a restart applies) or 400 and why
///   POST /rebalance start a repair pass (`Rebalancer`): every member's keys
///                   copied to their owners missing them, orphans deleted;
///                   200, or 409 and why (a change or another pass under way,
///                   rebalance off)
///
/// Requests are HTTP/1.0 or 1.1 heads without a body. Refusals, checked in
/// this order:
///
///   400  the head, judged as it arrives (`AdminRequestHead` has the
///        grammar): a malformed request line or header line
///   505  a version other than HTTP/1.0 and HTTP/1.1
///   431  the head (request line and header lines) over 8 KiB
///   405  a method other than GET and POST              Allow: GET, POST
///   403  from another origin (`AdminAccess`): an `Origin` other than
///        http://<the Host the request names>, `Sec-Fetch-Site` other than
///        same-origin or none, or, on a loopback endpoint, a Host that is not
///        a loopback name
///   404  a path other than /metrics, /health, /ready, /reload and /rebalance
///   405  the other method on a path                    Allow: GET / Allow: POST
///   401  `admin_token` is set and `Authorization: Bearer <token>` is missing
///        or wrong (POST /reload and /rebalance; GET /metrics too with
///        `admin_token_protects_metrics`)               WWW-Authenticate: Bearer
///   400  a body (Content-Length other than 0, or Transfer-Encoding)
///   415  a POST with a Content-Type: browsers' forms and cross-origin
///        fetches always send one, `curl -X POST` and Prometheus never do
///
/// Connections: the head must arrive within 5 s of connecting and the answer
/// be taken within 5 s more, or the connection is closed. At most 32 are
/// open: a 33rd makes room by closing the one that has waited longest for
/// its head, when that one has waited 1 s or more (a slow or idle client
/// cannot keep operators out); otherwise it is answered 503 and closed.
final class MetricsEndpoint {
    static let headLimit = 8 * 1024
    static let headTimeoutMilliseconds: Int64 = 5000
    static let answerTimeoutMilliseconds: Int64 = 5000
    static let connectionLimit = 32
    /// How long a connection must have waited for its head before a newcomer
    /// may take its place.
    static let evictableAfterMilliseconds: Int64 = 1000
    /// How often deadlines are checked: a connection is closed at most this
    /// long after its deadline.
    static let sweepMilliseconds = 250
    static let busy: StaticString = """
        HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 27\r\n\
        Connection: close\r\n\r\ntoo many admin connections\n
        """

    let access: AdminAccess
    private let listener: Listener
    private let context: ProxyContext
    private let reload: () -> ReloadOutcome
    /// Starts an on-demand rebalance: what started, or why it cannot.
    private let rebalance: () -> Result<String, Rebalancer.RepairRefusal>
    /// Why the proxy cannot serve now, or nil when it can.
    private let notReadyReason: () -> String?
    private var exchanges: [ObjectIdentifier: AdminExchange] = [:]
    /// Counts connections accepted: the order they came in.
    private var accepted = 0
    private var sweep: EventTimer?

    init(address: HostPort, loop: EventLoop, context: ProxyContext, notReadyReason: @escaping () -> String?,
         rebalance: @escaping () -> Result<String, Rebalancer.RepairRefusal> = { .failure(.disabled) },
         reload: @escaping () -> ReloadOutcome) throws {
        self.context = context
        self.reload = reload
        self.rebalance = rebalance
        self.notReadyReason = notReadyReason
        self.access = AdminAccess(address: address)
        let socketAddress = try SocketAddress(host: address.host, port: address.port)
        let fd = try Socket.listen(on: socketAddress, backlog: 64)
        var accept: (Int32) -> Void = { _ in }
        listener = Listener(fd: fd, loop: loop) { accept($0) }
        accept = { [unowned self] client in admit(client, loop: loop) }
    }

    private func admit(_ fd: Int32, loop: EventLoop) {
        let now = monotonicMilliseconds()
        if exchanges.count >= MetricsEndpoint.connectionLimit {
            let waiting = exchanges.values.filter { !$0.answered && now - $0.acceptedAt >= MetricsEndpoint.evictableAfterMilliseconds }
            guard let oldest = waiting.min(by: { $0.serial < $1.serial }) else {
                Socket.refuse(fd, reason: MetricsEndpoint.busy)
                return
            }
            oldest.close()
        }
        accepted += 1
        let exchange = AdminExchange(endpoint: self, serial: accepted, acceptedAt: now)
        // The connection keeps itself alive until it closes.
        let connection = Connection(fd: fd, loop: loop, handler: exchange)
        exchange.connection = connection
        exchanges[ObjectIdentifier(exchange)] = exchange
        if sweep == nil {
            let timer = EventTimer(loop: loop, milliseconds: MetricsEndpoint.sweepMilliseconds, repeating: true) { [unowned self] in
                closeOverdue()
            }
            sweep = timer
        }
        if let sweep, !sweep.isPending { sweep.start() }
    }

    fileprivate func forget(_ exchange: AdminExchange) {
        exchanges[ObjectIdentifier(exchange)] = nil
    }

    private func closeOverdue() {
        let now = monotonicMilliseconds()
        for exchange in exchanges.values where exchange.deadline <= now { exchange.close() }
        if exchanges.isEmpty { sweep?.stop() }
    }

    func respond(to head: AdminRequestHead) -> AdminResponse {
        let route = Route(rawValue: head.target)
        guard head.method == "GET" || head.method == "POST" else {
            return .methodNotAllowed(allow: route?.method ?? "GET, POST")
        }
        if let refusal = access.crossOriginRefusal(head) { return refusal }
        guard let route else { return .notFound }
        guard head.method == route.method else { return .methodNotAllowed(allow: route.method) }
        let configuration = context.topology.configuration
        if let token = configuration.adminToken, route.method == "POST" || (route == .metrics && configuration.adminTokenProtectsMetrics),
           let refusal = AdminAccess.authorizationRefusal(head, token: token) {
            return refusal
        }
        if head.declaresBody { return .badRequest("requests to this endpoint have no body") }
        switch route {
        case .metrics:
            return .ok(PrometheusText.render(context), contentType: "text/plain; version=0.0.4")
        case .health:
            return .ok("ok\n")
        case .ready:
            if let reason = notReadyReason() { return .unavailable(reason + "\n") }
            return .ok("ready\n")
        case .reload:
            if head.value("content-type") != nil { return .unsupportedMediaType }
            let outcome = reload()
            if case .refused = outcome { return .badRequest(outcome.description) }
            return .ok(outcome.description + "\n")
        case .rebalance:
            if head.value("content-type") != nil { return .unsupportedMediaType }
            switch rebalance() {
            case .success(let started): return .ok(started + "\n")
            case .failure(let refusal): return .conflict(refusal.description)
            }
        }
    }

    private enum Route: String {
        case metrics = "/metrics"
        case health = "/health"
        case ready = "/ready"
        case reload = "/reload"
        case rebalance = "/rebalance"

        var method: String { self == .reload || self == .rebalance ? "POST" : "GET" }
    }
}

/// One admin connection: reads a request head, answers it, closes.
private final class AdminExchange: ConnectionHandler {
    private unowned let endpoint: MetricsEndpoint
    weak var connection: Connection?
    let serial: Int
    let acceptedAt: Int64
    /// When the connection is closed whatever it is doing.
    private(set) var deadline: Int64
    /// The answer is queued; the client has only to read it.
    private(set) var answered = false
    /// Input bytes already looked at, and whether the request line was among
    /// them: the head is parsed only when new bytes may end the request line
    /// or the head, so a client trickling bytes costs a look at each byte
    /// once, not a parse per read.
    private var scanned = 0
    private var sawRequestLine = false

    init(endpoint: MetricsEndpoint, serial: Int, acceptedAt: Int64) {
        self.endpoint = endpoint
        self.serial = serial
        self.acceptedAt = acceptedAt
        self.deadline = acceptedAt + MetricsEndpoint.headTimeoutMilliseconds
    }

    func connectionReadable(_ connection: Connection) {
        guard !answered else { return connection.input.removeAll() }
        let bytes = connection.input.readableBytes
        // Two bytes back: an empty line ("\n\r\n") may straddle two reads.
        let fresh = UnsafeRawBufferPointer(rebasing: bytes[max(0, scanned - 2)...])
        scanned = bytes.count
        let endsLine = fresh.contains(UInt8(ascii: "\n"))
        guard (endsLine && !sawRequestLine) || AdminExchange.endsHead(fresh) || bytes.count >= MetricsEndpoint.headLimit else { return }
        sawRequestLine = sawRequestLine || endsLine
        switch AdminRequestHead.parse(bytes, limit: MetricsEndpoint.headLimit) {
        case .incomplete: return
        case .refused(let response): answer(response, on: connection)
        // HEAD is refused like any method but GET and POST, and as for any
        // HEAD the answer has no content.
        case .complete(let head): answer(endpoint.respond(to: head), withBody: head.method != "HEAD", on: connection)
        }
    }

    /// Whether `bytes` hold an empty line: "\n\n" or "\n\r\n".
    private static func endsHead(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var index = 0
        while index + 1 < bytes.count {
            if bytes[index] == UInt8(ascii: "\n") {
                if bytes[index + 1] == UInt8(ascii: "\n") { return true }
                if bytes[index + 1] == UInt8(ascii: "\r") && index + 2 < bytes.count && bytes[index + 2] == UInt8(ascii: "\n") { return true }
            }
            index += 1
        }
        return false
    }

    private func answer(_ response: AdminResponse, withBody: Bool = true, on connection: Connection) {
        answered = true
        deadline = monotonicMilliseconds() + MetricsEndpoint.answerTimeoutMilliseconds
        connection.input.removeAll()
        connection.output.append(string: response.encoded(withBody: withBody))
        connection.closeAfterFlush()
    }

    /// Past the deadline: a client still sending its head gets an orderly
    /// close; one not reading its answer a reset, so the kernel does not keep
    /// the unsent answer for it either.
    func close() {
        guard let connection else { return }
        if answered { connection.abort() } else { connection.close() }
    }

    func connectionDrained(_ connection: Connection) {}

    func connectionClosed(_ connection: Connection) {
        self.connection = nil
        endpoint.forget(self)
    }
}
