import EventLoop
import Glibc
import MemcacheProtocol

/// The proxy's `stats`: memcached's field names where they mean the same
/// (clients and exporters read them), `proxy_*` fields for what only a proxy
/// has, and `stats nodes` for each node's state.
///
/// Also the proxy's answers to memcached's item and memory administration
/// (`stats items|slabs|sizes|cachedump|detail`, `cache_memlimit`, `slabs`,
/// `lru`, `lru_crawler`, `watch`): the proxy holds no items, and these act on
/// one server's memory, so they are sent to each node directly. Through the
/// proxy each gets the reply memcached gives to the same words on a server
/// with nothing to act on, checked with memcached's grammar, so clients and
/// test helpers that wait for `END` or `OK` go on (README, "Deliberate
/// differences").
enum ProxyStatsReport {
    static let version = MemclusterVersion.release + "-proxy"

    static func answer(_ arguments: [String], proxied: ProxiedRequest, worker: ProxyWorker) {
        let context = worker.context
        switch arguments.first {
        case nil:
            proxied.complete(lines: general(context))
        case "nodes":
            proxied.complete(lines: nodes(context))
        case "settings":
            proxied.complete(lines: settings(context.topology.configuration))
        case "reset":
            for counters in context.counters { counters.reset() }
            proxied.complete(line: "RESET")
        case "items":
            // Per-class item and memory figures are each node's own: answered as
            // by a memcached holding no items.
            proxied.complete(lines: [])
        case "slabs":
            proxied.complete(lines: [("active_slabs", "0"), ("total_malloced", "0")])
        case "sizes", "sizes_enable", "sizes_disable":
            proxied.complete(lines: [("sizes_status", "disabled")])
        case "detail":
            // stats detail on|off|dump: per-prefix counts are kept by each node.
            switch arguments.count > 1 ? arguments[1] : "" {
            case "on", "off": proxied.complete(line: "OK")
            case "dump": proxied.complete(line: "END")
            default: proxied.complete(line: "CLIENT_ERROR usage: stats detail on|off|dump")
            }
        case "cachedump":
            // stats cachedump <class> <limit>: no items here to list.
            if arguments.count < 3 {
                proxied.complete(line: "CLIENT_ERROR bad command line")
            } else if let classID = uint32(arguments[1]), uint32(arguments[2]) != nil {
                proxied.complete(line: classID < 64 ? "END" : "CLIENT_ERROR Illegal slab id")
            } else {
                proxied.complete(line: "CLIENT_ERROR bad command line format")
            }
        default:
            proxied.complete(line: "ERROR")
        }
    }

    /// `cache_memlimit`, `slabs`, `lru`, `lru_crawler`, `watch` (and `misbehave`,
    /// which exists only in memcached's debug builds). `arguments` are the words
    /// after the command. Nothing is changed anywhere: each node's memory and LRU
    /// are its own, and a proxy-wide value would undo per-node sizes.
    static func administer(_ request: Request, arguments: [String], proxied: ProxiedRequest) {
        // memcached's set_noreply_maybe, for the commands that honour it.
        let noreply = arguments.last == "noreply"
        func answer(_ line: StaticString, quiet: Bool) {
            if quiet { proxied.complete() } else { proxied.complete(line: line) }
        }
        switch request.command {
        case .cacheMemlimit:
            // cache_memlimit <megabytes> [noreply], read as memcached reads it by the parser.
            let megabytes = request.numericArgument
            if megabytes < 8 {
                answer("MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m", quiet: request.noreply)
            } else if megabytes > 1_000_000_000 {
                answer("MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes", quiet: request.noreply)
            } else {
                answer("OK", quiet: request.noreply)
            }
        case .slabs:
            // slabs reassign <src> <dst> | slabs automove <0|1|2> | slabs automove ratio <r>
            if arguments.count == 3 && arguments[0] == "reassign" {
                guard int32(arguments[1]) != nil, int32(arguments[2]) != nil else {
                    return proxied.complete(line: "CLIENT_ERROR bad command line format")
                }
                proxied.complete(line: "BADCLASS invalid src or dst class id")
            } else if arguments.count >= 2 && arguments[0] == "automove" {
                if arguments[1] == "ratio" {
                    guard arguments.count >= 3, double(arguments[2]) != nil else { return answer("ERROR", quiet: noreply) }
                    answer("OK", quiet: noreply)
                } else if let level = uint32(arguments[1]) {
                    answer(level <= 2 ? "OK" : "ERROR", quiet: noreply)
                } else {
                    answer("CLIENT_ERROR bad command line format", quiet: noreply)
                }
            } else {
                proxied.complete(line: "ERROR")
            }
        case .lru:
            // lru tune <hot pct> <warm pct> <hot factor> <warm factor> | lru mode flat|segmented | lru temp_ttl <ttl>
            switch arguments.first {
            case "tune" where arguments.count >= 5:
                guard let hot = uint32(arguments[1]), let warm = uint32(arguments[2]),
                      let hotFactor = double(arguments[3]), let warmFactor = double(arguments[4]) else {
                    return answer("ERROR", quiet: noreply)
                }
                if hot &+ warm > 80 {
                    answer("ERROR hot and warm pcts must not exceed 80", quiet: noreply)
                } else if hotFactor <= 0 || warmFactor <= 0 {
                    answer("ERROR hot/warm age factors must be greater than 0", quiet: noreply)
                } else {
                    answer("OK", quiet: noreply)
                }
            case "mode" where arguments.count >= 2:
                answer(arguments[1] == "flat" || arguments[1] == "segmented" ? "OK" : "ERROR", quiet: noreply)
            case "temp_ttl" where arguments.count >= 2:
                answer(int32(arguments[1]) != nil ? "OK" : "ERROR", quiet: noreply)
            default:
                answer("ERROR", quiet: noreply)
            }
        case .lruCrawler:
            // lru_crawler crawl|metadump <classes> | tocrawl <n> | sleep <us> | enable | disable
            switch (arguments.first, arguments.count) {
            case ("crawl", 2), ("metadump", 2):
                let crawl = arguments[0] == "crawl"
                switch CrawlerClasses.parse(arguments[1]) {
                case nil:
                    proxied.complete(line: "BADCLASS invalid class id")
                case let classes? where classes.isEmpty:
                    proxied.complete(line: "NOTSTARTED no items to crawl")
                case .hash? where crawl:
                    // memcached walks the hash table only for a metadump.
                    proxied.complete(line: "ERROR an unknown error happened")
                default:
                    // A metadump of no items is its END line.
                    proxied.complete(line: crawl ? "OK" : "END")
                }
            case ("tocrawl", 2):
                proxied.complete(line: uint32(arguments[1]) != nil ? "OK" : "CLIENT_ERROR bad command line format")
            case ("sleep", 2):
                guard let microseconds = uint32(arguments[1]) else {
                    return proxied.complete(line: "CLIENT_ERROR bad command line format")
                }
                proxied.complete(line: microseconds > 1_000_000 ? "CLIENT_ERROR sleep must be one second or less" : "OK")
            case ("enable", 1), ("disable", 1):
                proxied.complete(line: "OK")
            default:
                proxied.complete(line: "ERROR")
            }
        case .watch:
            // The proxy has no log stream to follow: memcached's answer when watch is off (-W).
            proxied.complete(line: "CLIENT_ERROR watch commands not allowed")
        default:
            proxied.complete(line: "ERROR")
        }
    }

    /// memcached's `safe_strtoul`, `safe_strtol` and `safe_strtod` on one word.
    private static func uint32(_ word: String) -> UInt32? {
        var word = word
        return word.withUTF8 { MemcachedNumber.uint32(UnsafeRawBufferPointer($0), 0..<$0.count) }
    }

    private static func int32(_ word: String) -> Int32? {
        var word = word
        return word.withUTF8 { MemcachedNumber.int32(UnsafeRawBufferPointer($0), 0..<$0.count) }
    }

    private static func double(_ word: String) -> Double? {
        Double(word)
    }

    static func general(_ context: ProxyContext) -> [(String, String)] {
        let process = ProcessUsage.statsLines()
        let now = Int64(time(nil))
        func total(_ counter: ProxyCounter) -> String { String(context.total(counter)) }
        let topology = context.topology
        let live = topology.nodes.filter(\.isUp).count
        let monotonic = monotonicMilliseconds()
        let changeEndsIn: Int64 = topology.transition.map { max(0, $0.endsAt - monotonic) } ?? 0
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
            ("proxy_nodes", String(topology.ring.nodes.count)),
            ("proxy_nodes_live", String(live)),
            ("proxy_replicas", String(topology.replicas)),
            ("proxy_cmd_delete", total(.cmdDelete)),
            ("proxy_cmd_arithmetic", total(.cmdArithmetic)),
            ("proxy_read_fallbacks", total(.readFallbacks)),
            ("proxy_miss_failovers", total(.missFailovers)),
            ("proxy_warmup_hits", total(.warmupHits)),
            ("proxy_warmup_misses", total(.warmupMisses)),
            ("proxy_replica_checks", total(.replicaChecks)),
            ("proxy_replica_repairs", total(.replicaRepairs)),
            ("proxy_replica_check_skips", total(.replicaCheckSkips)),
            ("proxy_degraded_writes", total(.degradedWrites)),
            ("proxy_unavailable", total(.unavailable)),
            ("proxy_client_errors", total(.clientErrors)),
            ("proxy_reloads", String(context.reloads.load(ordering: .relaxed))),
            ("proxy_membership_generation", context.topology.generation),
            ("proxy_membership_phase", topology.phase(at: monotonic)),
            ("proxy_membership_change_ends_in_ms", String(changeEndsIn)),
            ("proxy_reload_failures", String(context.reloadFailures.load(ordering: .relaxed))),
            ("proxy_discovery_lookups", String(context.discoveryLookups.load(ordering: .relaxed))),
            ("proxy_discovery_changes", String(context.discoveryChanges.load(ordering: .relaxed))),
            ("proxy_discovery_failures", String(context.discoveryFailures.load(ordering: .relaxed))),
            ("proxy_rebalance_pass", String(describing: context.rebalance.currentPass)),
        ] + context.rebalance.counters.map { ("proxy_rebalance_" + $0.name, String($0.value)) }
          + context.summedNodeStats().map { ($0.0, String($0.1)) }
    }

    /// Of each node's own stats, what `stats nodes` shows.
    static let perNodeFields = ["curr_items", "bytes", "limit_maxbytes", "evictions"]

    /// `STAT node:<i>:<field> <value>` for every node, in ring order.
    static func nodes(_ context: ProxyContext) -> [(String, String)] {
        let topology = context.topology
        var lines: [(String, String)] = [("generation", topology.generation)]
        let members = topology.ring.nodes.count
        for (index, node) in topology.nodes.enumerated() {
            let prefix = "node:\(index):"
            // Nodes after the ring's are leaving: an earlier membership had them.
            let ringNode = index < members ? topology.configuration.nodes[index] : node.ringNode
            lines.append((prefix + "address", node.identity))
            if let name = ringNode.name { lines.append((prefix + "name", name)) }
            lines.append((prefix + "weight", String(ringNode.weight)))
            lines.append((prefix + "points", String(index < members ? topology.ring.pointCounts[index] : 0)))
            lines.append((prefix + "membership", index < members ? "member" : "leaving"))
            lines.append((prefix + "state", String(describing: node.health)))
            lines.append((prefix + "requests", String(node.requests.load(ordering: .relaxed))))
            lines.append((prefix + "failures", String(node.failures.load(ordering: .relaxed))))
            lines.append((prefix + "timeouts", String(node.timeouts.load(ordering: .relaxed))))
            lines.append((prefix + "marked_down", String(node.markedDown.load(ordering: .relaxed))))
            lines.append((prefix + "restarts", String(node.restarts.load(ordering: .relaxed))))
            // The node's own view, as its last stats poll (every 5 s) said.
            if let stats = context.nodeStats(of: node) {
                for field in ProxyStatsReport.perNodeFields { lines.append((prefix + field, String(stats[field] ?? 0))) }
            }
        }
        return lines
    }

    static func settings(_ configuration: ProxyConfiguration) -> [(String, String)] {
        [
            ("listen", configuration.listen.description),
            ("threads", String(configuration.threads)),
            ("replicas", String(configuration.effectiveReplicas)),
            ("hash", String(describing: configuration.hashMode)),
            ("key_hash", configuration.effectiveKeyHash.rawValue),
            ("backend_connections", String(configuration.backendConnections)),
            ("request_timeout_ms", String(configuration.requestTimeoutMilliseconds)),
            ("connect_timeout_ms", String(configuration.connectTimeoutMilliseconds)),
            ("failure_limit", String(configuration.failureLimit)),
            ("probe_initial_ms", String(configuration.probeInitialMilliseconds)),
            ("probe_max_ms", String(configuration.probeMaxMilliseconds)),
            ("flap_window_s", String(configuration.flapWindowSeconds)),
            ("write_policy", configuration.writePolicy.rawValue),
            ("miss_failover", configuration.missFailover ? "yes" : "no"),
            ("replica_check", configuration.replicaCheck ? "yes" : "no"),
            ("tls", configuration.clientTLS == nil ? "no" : (configuration.clientTLS?.verifyMode == 2 ? "verify_clients" : "yes")),
            ("node_tls", configuration.nodeTLS == nil ? "no" : "yes"),
            ("node_auth", configuration.nodeAuth?.user ?? "no"),
            ("flush_all", configuration.flushAllEnabled ? "yes" : "no"),
            ("warmup_s", String(configuration.warmupSeconds)),
            ("item_size_max", String(configuration.itemSizeMax)),
            ("maxconns", String(configuration.maxConnections)),
        ]
    }
}

extension ProxiedRequest {
    /// Completes with `STAT <name> <value>` lines and `END`.
    func complete(lines: [(String, String)]) {
        reply.removeAll()
        reply.append(string: StatsReply.render(lines))
        complete()
    }
}
