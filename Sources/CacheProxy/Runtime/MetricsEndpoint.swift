import Buffers
import EventLoop
import Glibc

/// A small HTTP endpoint on the main loop, for operators:
///   GET  /metrics   Prometheus text format: the `stats` counters, per-node state
///   POST /reload    reload the configuration (as SIGHUP), answer the outcome
/// One request per connection (HTTP/1.0 style); anything else gets 404.
final class MetricsEndpoint {
    private let listener: Listener
    private let context: ProxyContext
    private let reload: () -> String

    init(address: HostPort, loop: EventLoop, context: ProxyContext, reload: @escaping () -> String) throws {
        self.context = context
        self.reload = reload
        let socketAddress = try SocketAddress(host: address.host, port: address.port)
        let fd = try Socket.listen(on: socketAddress, backlog: 64)
        var accept: (Int32) -> Void = { _ in }
        listener = Listener(fd: fd, loop: loop) { accept($0) }
        accept = { [unowned self] client in
            _ = Connection(fd: client, loop: loop, handler: HTTPExchange(endpoint: self))
        }
    }

    func respond(method: String, path: String) -> (status: String, body: String) {
        switch (method, path) {
        case ("GET", "/metrics"):
            return ("200 OK", PrometheusText.render(context))
        case ("POST", "/reload"):
            let outcome = reload()
            return (outcome == "OK" ? "200 OK" : "400 Bad Request", outcome + "\n")
        default:
            return ("404 Not Found", "GET /metrics or POST /reload\n")
        }
    }
}

/// Reads one HTTP request head and answers it.
private final class HTTPExchange: ConnectionHandler {
    private unowned let endpoint: MetricsEndpoint

    init(endpoint: MetricsEndpoint) { self.endpoint = endpoint }

    func connectionReadable(_ connection: Connection) {
        let text = String(decoding: connection.input.readableBytes, as: UTF8.self)
        guard text.contains("\r\n\r\n") || text.contains("\n\n") else {
            if connection.input.readableCount > 16 * 1024 { connection.close() }
            return
        }
        let requestLine = text.split(separator: "\n", maxSplits: 1).first.map(String.init) ?? ""
        let parts = requestLine.split(separator: " ")
        let method = parts.count > 0 ? String(parts[0]) : ""
        let path = parts.count > 1 ? String(parts[1]) : ""
        let (status, body) = endpoint.respond(method: method, path: path)
        let bodyLength = body.utf8.count
        connection.output.append(string: "HTTP/1.0 \(status)\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: \(bodyLength)\r\nConnection: close\r\n\r\n\(body)")
        connection.input.removeAll()
        connection.closeAfterFlush()
    }

    func connectionDrained(_ connection: Connection) {}
    func connectionClosed(_ connection: Connection) {}
}

/// The proxy's counters in Prometheus' text format.
enum PrometheusText {
    static func render(_ context: ProxyContext) -> String {
        var text = ""
        func metric(_ name: String, _ kind: String, _ help: String, _ value: UInt64) {
            text += "# HELP memcluster_proxy_\(name) \(help)\n# TYPE memcluster_proxy_\(name) \(kind)\n"
            text += "memcluster_proxy_\(name) \(value)\n"
        }
        let counted: [(String, ProxyCounter, String)] = [
            ("connections_total", .totalConnections, "Client connections accepted."),
            ("get_commands_total", .cmdGet, "Keys read by get, gets and mg."),
            ("set_commands_total", .cmdSet, "Storage commands."),
            ("get_hits_total", .getHits, "Keys found."),
            ("get_misses_total", .getMisses, "Keys not found."),
            ("read_fallbacks_total", .readFallbacks, "Reads answered by a replica because the primary failed or was down."),
            ("miss_failovers_total", .missFailovers, "Misses at the primary retried on a replica."),
            ("warmup_hits_total", .warmupHits, "Keys copied from their previous owner after a scale-out or recovery."),
            ("degraded_writes_total", .degradedWrites, "Writes that reached fewer replicas than the key has."),
            ("unavailable_total", .unavailable, "Requests no live node could answer."),
            ("bytes_read_total", .bytesRead, "Bytes read from clients."),
            ("bytes_written_total", .bytesWritten, "Bytes written to clients."),
        ]
        for (name, counter, help) in counted { metric(name, "counter", help, context.total(counter)) }
        metric("current_connections", "gauge", "Open client connections.", UInt64(max(0, context.currentConnections.load(ordering: .relaxed))))
        metric("reloads_total", "counter", "Configuration reloads applied.", UInt64(context.reloads.load(ordering: .relaxed)))
        text += "# HELP memcluster_proxy_node_up Whether a node serves (1) or is down or recovering (0).\n# TYPE memcluster_proxy_node_up gauge\n"
        let topology = context.topology
        for node in topology.nodes {
            text += "memcluster_proxy_node_up{node=\"\(node.identity)\"} \(node.isUp ? 1 : 0)\n"
        }
        text += "# HELP memcluster_proxy_node_requests_total Requests sent to a node.\n# TYPE memcluster_proxy_node_requests_total counter\n"
        for node in topology.nodes {
            text += "memcluster_proxy_node_requests_total{node=\"\(node.identity)\"} \(node.requests.load(ordering: .relaxed))\n"
        }
        text += "# HELP memcluster_proxy_node_failures_total Requests a node failed (errors, timeouts, lost connections).\n# TYPE memcluster_proxy_node_failures_total counter\n"
        for node in topology.nodes {
            text += "memcluster_proxy_node_failures_total{node=\"\(node.identity)\"} \(node.failures.load(ordering: .relaxed))\n"
        }
        return text
    }
}
