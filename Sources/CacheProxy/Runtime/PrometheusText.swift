import EventLoop

/// The proxy's counters, gauges and latency histograms in Prometheus' text
/// exposition format (version 0.0.4), for `GET /metrics`. Names follow
/// Prometheus' conventions: a `memcluster_proxy_` prefix, `_total` on
/// counters, base units (seconds, bytes).
enum PrometheusText {
    static func render(_ context: ProxyContext, now: Int64 = monotonicMilliseconds()) -> String {
        var text = Writer()
        let counted: [(String, ProxyCounter, String)] = [
            ("connections_total", .totalConnections, "Client connections accepted."),
            ("get_commands_total", .cmdGet, "Keys read by get, gets and mg."),
            ("set_commands_total", .cmdSet, "Storage commands."),
            ("get_hits_total", .getHits, "Keys found."),
            ("get_misses_total", .getMisses, "Keys not found."),
            ("read_fallbacks_total", .readFallbacks, "Reads answered by a replica because the primary failed or was down."),
            ("miss_failovers_total", .missFailovers, "Misses at the primary retried on a replica."),
            ("warmup_hits_total", .warmupHits, "Keys copied from their previous owner or a replica after a membership change or a node's recovery."),
            ("warmup_misses_total", .warmupMisses, "Keys looked up at their previous owner or a replica and not found there either."),
            ("warmup_skips_total", .warmupSkips, "Copies not made because a write of the key was under way."),
            ("replica_checks_total", .replicaChecks, "Writes read back from every replica they went to."),
            ("replica_repairs_total", .replicaRepairs, "Copies of a key that differed from the first replica's and were made to agree with it."),
            ("replica_check_skips_total", .replicaCheckSkips, "Replica checks dropped because too many were waiting to read again."),
            ("degraded_writes_total", .degradedWrites, "Writes that reached fewer replicas than the key has."),
            ("unavailable_total", .unavailable, "Requests no live node could answer."),
            ("client_errors_total", .clientErrors, "Requests refused as malformed."),
            ("bytes_read_total", .bytesRead, "Bytes read from clients."),
            ("bytes_written_total", .bytesWritten, "Bytes written to clients."),
        ]
        for (name, counter, help) in counted { text.single(name, "counter", help, context.total(counter)) }
        text.single("current_connections", "gauge", "Open client connections.",
                    UInt64(max(0, context.currentConnections.load(ordering: .relaxed))))
        text.single("rejected_connections_total", "counter", "Client connections refused over max_connections.",
                    UInt64(context.rejectedConnections.load(ordering: .relaxed)))
        text.single("reloads_total", "counter", "Configuration reloads applied.", UInt64(context.reloads.load(ordering: .relaxed)))
        text.single("reload_failures_total", "counter", "Configuration reloads refused (the membership in force stayed).",
                    UInt64(context.reloadFailures.load(ordering: .relaxed)))
        text.single("discovery_lookups_total", "counter", "Look-ups of the discovery name that gave a node list.",
                    UInt64(context.discoveryLookups.load(ordering: .relaxed)))
        text.single("discovery_changes_total", "counter", "Discovered node lists that differed from the running one and were installed.",
                    UInt64(context.discoveryChanges.load(ordering: .relaxed)))
        text.single("discovery_failures_total", "counter", "Look-ups of the discovery name that failed or gave no node; the running list stayed.",
                    UInt64(context.discoveryFailures.load(ordering: .relaxed)))

        for counter in context.rebalance.counters {
            text.single("rebalance_\(counter.name)_total", "counter", counter.help, counter.value)
        }
        text.family("rebalance_pass", "gauge", "The rebalance pass under way (1): idle, copying, cleaning or repairing.")
        for pass in Rebalancer.Pass.allCases {
            text.sample("rebalance_pass", ["pass": "\(pass)"], pass == context.rebalance.currentPass ? 1 : 0)
        }

        let topology = context.topology
        text.family("membership", "gauge", "The membership in force, by generation (the same on every proxy that places keys alike).")
        text.sample("membership", ["generation": topology.generation], 1)
        text.family("membership_phase", "gauge",
                    "The phase of the membership change under way (1 for the current one): guarded, warming, settling or stable.")
        let phase = topology.phase(at: now)
        for name in ["guarded", "warming", "settling", "stable"] {
            text.sample("membership_phase", ["phase": name], name == phase ? 1 : 0)
        }

        var latency = Array(repeating: LatencyHistograms.Snapshot(), count: RequestClass.allCases.count)
        for worker in context.requestLatency {
            for requestClass in RequestClass.allCases { worker.add(into: &latency[requestClass.rawValue], series: requestClass.rawValue) }
        }
        text.family("request_duration_seconds", "histogram",
                    "Time from reading a request to having its whole reply, by command class.")
        for requestClass in RequestClass.allCases {
            text.histogram("request_duration_seconds", ["command": requestClass.label], latency[requestClass.rawValue])
        }

        let nodes = topology.nodes
        func perNode(_ name: String, _ kind: String, _ help: String, _ value: (BackendNode) -> UInt64) {
            text.family(name, kind, help)
            for node in nodes { text.sample(name, ["node": node.identity], value(node)) }
        }
        perNode("node_up", "gauge", "Whether a node serves (1) or is down or recovering (0).") { $0.isUp ? 1 : 0 }
        perNode("node_refilling", "gauge", "Whether a node's misses are still refilled from replicas after it came back (1) or not (0).") {
            $0.isRefilling(now: now) ? 1 : 0
        }
        perNode("node_requests_total", "counter", "Requests sent to a node.") { UInt64($0.requests.load(ordering: .relaxed)) }
        perNode("node_failures_total", "counter", "Requests a node failed (errors, timeouts, lost connections).") {
            UInt64($0.failures.load(ordering: .relaxed))
        }
        perNode("node_timeouts_total", "counter", "Requests a node did not answer within request_timeout_ms.") {
            UInt64($0.timeouts.load(ordering: .relaxed))
        }
        perNode("node_marked_down_total", "counter", "Times a node was marked down.") { UInt64($0.markedDown.load(ordering: .relaxed)) }
        perNode("node_restarts_total", "counter", "Times another process was found answering at a node's address.") {
            UInt64($0.restarts.load(ordering: .relaxed))
        }
        let polled = nodes.compactMap { node in context.nodeStats(of: node).map { (node, $0) } }
        for (field, name, help) in [("curr_items", "node_items", "Items a node holds, as its last stats poll (every 5 s) said."),
                                    ("bytes", "node_bytes", "Bytes of items a node holds, as its last stats poll said.")] {
            text.family(name, "gauge", help)
            for (node, stats) in polled { text.sample(name, ["node": node.identity], stats[field] ?? 0) }
        }
        text.family("node_request_duration_seconds", "histogram", "Time from sending a request to a node to reading its reply.")
        for node in nodes {
            var snapshot = LatencyHistograms.Snapshot()
            node.latency.add(into: &snapshot)
            text.histogram("node_request_duration_seconds", ["node": node.identity], snapshot)
        }
        return text.output
    }

    /// Appends families and samples; escapes label values as the format requires.
    private struct Writer {
        var output = ""

        mutating func family(_ name: String, _ kind: String, _ help: String) {
            output += "# HELP memcluster_proxy_\(name) \(help)\n# TYPE memcluster_proxy_\(name) \(kind)\n"
        }

        mutating func single(_ name: String, _ kind: String, _ help: String, _ value: UInt64) {
            family(name, kind, help)
            output += "memcluster_proxy_\(name) \(value)\n"
        }

        mutating func sample(_ name: String, _ labels: KeyValuePairs<String, String>, _ value: UInt64) {
            output += "memcluster_proxy_\(name)\(Writer.labels(labels)) \(value)\n"
        }

        mutating func histogram(_ name: String, _ labels: KeyValuePairs<String, String>, _ snapshot: LatencyHistograms.Snapshot) {
            let base = labels.map { "\($0.key)=\"\(Writer.escaped($0.value))\"" }
            var total: UInt64 = 0
            for (le, count) in snapshot.cumulative {
                output += "memcluster_proxy_\(name)_bucket{\((base + ["le=\"\(le)\""]).joined(separator: ","))} \(count)\n"
                total = count
            }
            output += "memcluster_proxy_\(name)_sum\(Writer.labels(labels)) \(LatencyHistograms.Snapshot.seconds(Int64(snapshot.sumNanoseconds)))\n"
            output += "memcluster_proxy_\(name)_count\(Writer.labels(labels)) \(total)\n"
        }

        private static func labels(_ labels: KeyValuePairs<String, String>) -> String {
            labels.isEmpty ? "" : "{" + labels.map { "\($0.key)=\"\(escaped($0.value))\"" }.joined(separator: ",") + "}"
        }

        /// Label values escape backslash, double quote and newline.
        private static func escaped(_ value: String) -> String {
            var result = ""
            for character in value {
                switch character {
                case "\\": result += "\\\\"
                case "\"": result += "\\\""
                case "\n": result += "\\n"
                default: result.append(character)
                }
            }
            return result
        }
    }
}
