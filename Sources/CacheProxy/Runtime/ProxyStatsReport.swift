import EventLoop
import Glibc
import MemcacheProtocol

/// The proxy's `stats`: memcached's field names where they mean the same
/// (clients and exporters read them), `proxy_*` fields for what only a proxy
/// has, and `stats nodes` for each node's state.
enum ProxyStatsReport {
    static let version = "1.6.18-memcluster-proxy"

    static func answer(_ arguments: [String], slot: ReplySlot, worker: ProxyWorker) {
        let context = worker.context
        switch arguments.first {
        case nil:
            slot.complete(lines: general(context))
        case "nodes":
            slot.complete(lines: nodes(context))
        case "settings":
            slot.complete(lines: settings(context.topology.configuration))
        case "reset":
            for counters in context.counters { counters.reset() }
            slot.complete(line: "RESET")
        default:
            slot.complete(line: "ERROR")
        }
    }

    static func general(_ context: ProxyContext) -> [(String, String)] {
        let process = ProcessUsage.statsLines()
        let now = Int64(time(nil))
        func total(_ counter: ProxyCounter) -> String { String(context.total(counter)) }
        let topology = context.topology
        let live = topology.nodes.filter(\.isUp).count
        return [
            ("pid", process.pid),
            ("uptime", String(now - context.startedAt)),
            ("time", String(now)),
            ("version", version),
            ("pointer_size", String(8 * MemoryLayout<UnsafeRawPointer>.size)),
            ("rusage_user", process.user),
            ("rusage_system", process.system),
            ("max_connections", String(topology.configuration.maxConnections)),
            ("curr_connections", String(context.currentConnections.load(ordering: .relaxed))),
            ("total_connections", total(.totalConnections)),
            ("rejected_connections", String(context.rejectedConnections.load(ordering: .relaxed))),
            ("cmd_get", total(.cmdGet)),
            ("cmd_set", total(.cmdSet)),
            ("cmd_flush", total(.cmdFlush)),
            ("cmd_touch", total(.cmdTouch)),
            ("cmd_meta", total(.cmdMeta)),
            ("get_hits", total(.getHits)),
            ("get_misses", total(.getMisses)),
            ("delete_misses", total(.deleteMisses)),
            ("delete_hits", total(.deleteHits)),
            ("incr_misses", total(.incrMisses)),
            ("incr_hits", total(.incrHits)),
            ("decr_misses", total(.decrMisses)),
            ("decr_hits", total(.decrHits)),
            ("cas_misses", total(.casMisses)),
            ("cas_hits", total(.casHits)),
            ("cas_badval", total(.casBadval)),
            ("touch_hits", total(.touchHits)),
            ("touch_misses", total(.touchMisses)),
            ("bytes_read", total(.bytesRead)),
            ("bytes_written", total(.bytesWritten)),
            ("accepting_conns", "1"),
            ("threads", String(context.counters.count)),
            ("conn_yields", "0"),
            ("proxy_nodes", String(topology.nodes.count)),
            ("proxy_nodes_live", String(live)),
            ("proxy_replicas", String(topology.replicas)),
            ("proxy_cmd_delete", total(.cmdDelete)),
            ("proxy_cmd_arithmetic", total(.cmdArithmetic)),
            ("proxy_read_fallbacks", total(.readFallbacks)),
            ("proxy_miss_failovers", total(.missFailovers)),
            ("proxy_warmup_hits", total(.warmupHits)),
            ("proxy_warmup_misses", total(.warmupMisses)),
            ("proxy_degraded_writes", total(.degradedWrites)),
            ("proxy_unavailable", total(.unavailable)),
            ("proxy_client_errors", total(.clientErrors)),
            ("proxy_reloads", String(context.reloads.load(ordering: .relaxed))),
            ("proxy_reload_failures", String(context.reloadFailures.load(ordering: .relaxed))),
        ] + context.summedNodeStats().map { ($0.0, String($0.1)) }
    }

    /// `STAT node:<i>:<field> <value>` for every node, in ring order.
    static func nodes(_ context: ProxyContext) -> [(String, String)] {
        let topology = context.topology
        var lines: [(String, String)] = []
        for (index, node) in topology.nodes.enumerated() {
            let prefix = "node:\(index):"
            lines.append((prefix + "address", node.identity))
            if let name = node.ringNode.name { lines.append((prefix + "name", name)) }
            lines.append((prefix + "weight", String(node.ringNode.weight)))
            lines.append((prefix + "points", String(topology.ring.pointCounts[index])))
            lines.append((prefix + "state", String(describing: node.health)))
            lines.append((prefix + "requests", String(node.requests.load(ordering: .relaxed))))
            lines.append((prefix + "failures", String(node.failures.load(ordering: .relaxed))))
            lines.append((prefix + "timeouts", String(node.timeouts.load(ordering: .relaxed))))
            lines.append((prefix + "marked_down", String(node.markedDown.load(ordering: .relaxed))))
        }
        return lines
    }

    static func settings(_ configuration: ProxyConfiguration) -> [(String, String)] {
        [
            ("listen", configuration.listen.description),
            ("threads", String(configuration.threads)),
            ("replicas", String(configuration.effectiveReplicas)),
            ("hash", String(describing: configuration.hashMode)),
            ("backend_connections", String(configuration.backendConnections)),
            ("request_timeout_ms", String(configuration.requestTimeoutMilliseconds)),
            ("connect_timeout_ms", String(configuration.connectTimeoutMilliseconds)),
            ("failure_limit", String(configuration.failureLimit)),
            ("probe_initial_ms", String(configuration.probeInitialMilliseconds)),
            ("probe_max_ms", String(configuration.probeMaxMilliseconds)),
            ("flap_window_s", String(configuration.flapWindowSeconds)),
            ("write_policy", configuration.writePolicy.rawValue),
            ("miss_failover", configuration.missFailover ? "yes" : "no"),
            ("flush_all", configuration.flushAllEnabled ? "yes" : "no"),
            ("warmup_s", String(configuration.warmupSeconds)),
            ("item_size_max", String(configuration.itemSizeMax)),
            ("maxconns", String(configuration.maxConnections)),
        ]
    }
}

extension ReplySlot {
    /// Completes with `STAT <name> <value>` lines and `END`.
    func complete(lines: [(String, String)]) {
        reply.removeAll()
        reply.append(string: StatsReply.render(lines))
        complete()
    }
}
