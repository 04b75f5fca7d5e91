import CacheStorage
import EventLoop
import Glibc

/// Builds the `stats` family of replies with memcached's field names, order and
/// meanings, so memcstat and the Prometheus memcached exporter read them.
struct NodeStatsReport {
    let context: NodeContext

    // memcached's `process_started` is set 62 s in the past, and its uptime
    // subtracts those 60 s again; the node's clock starts 2 s back.
    private var uptime: UInt32 { context.clock.now &- 2 }

    func general() -> [(String, String)] {
        let now = context.clock
        let process = ProcessUsage.statsLines()
        let storage = context.storage.statistics()
        func total(_ counter: Counter) -> String { String(context.total(counter)) }
        return [
            ("pid", process.pid),
            ("uptime", String(uptime)),
            ("time", String(now.unixNow)),
            ("version", NodeFlags.version),
            ("libevent", EventLoop.libeventVersion),
            ("pointer_size", String(8 * MemoryLayout<UnsafeRawPointer>.size)),
            ("rusage_user", process.user),
            ("rusage_system", process.system),
            ("max_connections", String(context.settings.maxConnections)),
            ("curr_connections", String(context.currentConnections.load(ordering: .relaxed))),
            ("total_connections", String(context.totalConnections.load(ordering: .relaxed))),
            ("rejected_connections", String(context.rejectedConnections.load(ordering: .relaxed))),
            ("connection_structures", String(context.currentConnections.load(ordering: .relaxed))),
            ("cmd_get", total(.cmdGet)),
            ("cmd_set", total(.cmdSet)),
            ("cmd_flush", total(.cmdFlush)),
            ("cmd_touch", total(.cmdTouch)),
            ("cmd_meta", total(.cmdMeta)),
            ("get_hits", total(.getHits)),
            ("get_misses", total(.getMisses)),
            ("get_expired", total(.getExpired)),
            ("get_flushed", total(.getFlushed)),
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
            ("store_too_large", total(.storeTooLarge)),
            ("store_no_memory", total(.storeNoMemory)),
            ("auth_cmds", "0"),
            ("auth_errors", "0"),
            ("bytes_read", total(.bytesRead)),
            ("bytes_written", total(.bytesWritten)),
            ("limit_maxbytes", String(storage.memoryLimit)),
            ("accepting_conns", "1"),
            ("listen_disabled_num", "0"),
            ("time_in_listen_disabled_us", "0"),
            ("threads", String(context.settings.threads)),
            ("conn_yields", total(.connYields)),
            ("malloc_fails", "0"),
            ("bytes", String(storage.bytes)),
            ("curr_items", String(storage.currentItems)),
            ("total_items", String(storage.totalItems)),
            ("expired_unfetched", String(storage.expiredUnfetched)),
            ("evicted_unfetched", String(storage.evictedUnfetched)),
            ("evicted_active", "0"),
            ("evictions", String(storage.evictions)),
            ("reclaimed", String(storage.reclaimed)),
        ]
    }

    func settings() -> [(String, String)] {
        let settings = context.settings
        return [
            ("maxbytes", String(context.storage.statistics().memoryLimit)),
            ("maxconns", String(settings.maxConnections)),
            ("tcpport", String(context.boundPort.load(ordering: .relaxed))),
            ("udpport", "0"),
            ("inter", settings.listenAddresses.joined(separator: ",")),
            ("verbosity", String(context.verbosity.load(ordering: .relaxed))),
            ("oldest", String(context.oldestLive.load(ordering: .relaxed))),
            ("evictions", settings.evictionsDisabled ? "off" : "on"),
            ("domain_socket", "NULL"),
            ("umask", "700"),
            ("shutdown_command", settings.shutdownEnabled ? "yes" : "no"),
            ("num_threads", String(settings.threads)),
            ("num_threads_per_udp", String(settings.threads)),
            ("stat_key_prefix", String(decoding: [context.prefixStatistics.delimiter], as: UTF8.self)),
            ("detail_enabled", context.prefixStatistics.isEnabled ? "yes" : "no"),
            ("reqs_per_event", String(settings.requestsPerEvent)),
            ("cas_enabled", settings.casEnabled ? "yes" : "no"),
            ("tcp_backlog", String(settings.listenBacklog)),
            ("binding_protocol", "ascii"),
            ("auth_enabled_sasl", "no"),
            ("auth_enabled_ascii", "no"),
            ("item_size_max", String(settings.itemSizeMax)),
            ("maxconns_fast", "yes"),
            ("flush_enabled", settings.flushEnabled ? "yes" : "no"),
            ("dump_enabled", settings.dumpingEnabled ? "yes" : "no"),
            ("idle_timeout", String(settings.idleTimeoutSeconds)),
            ("watch_enabled", settings.watchEnabled ? "yes" : "no"),
            ("drop_privileges", settings.user == nil ? "no" : "yes"),
        ]
    }

    /// The node has no slab classes; all items are reported as class 1 so tools
    /// that read per-class lines still find the totals.
    func items() -> [(String, String)] {
        let storage = context.storage.statistics()
        guard storage.currentItems > 0 else { return [] }
        return [
            ("items:1:number", String(storage.currentItems)),
            ("items:1:evicted", String(storage.evictions)),
            ("items:1:evicted_unfetched", String(storage.evictedUnfetched)),
            ("items:1:expired_unfetched", String(storage.expiredUnfetched)),
            ("items:1:reclaimed", String(storage.reclaimed)),
            ("items:1:outofmemory", String(context.total(.storeNoMemory))),
            ("items:1:mem_requested", String(storage.bytes)),
        ]
    }

    func slabs() -> [(String, String)] {
        let storage = context.storage.statistics()
        var lines: [(String, String)] = []
        if storage.currentItems > 0 {
            lines.append(("1:used_chunks", String(storage.currentItems)))
            lines.append(("1:mem_requested", String(storage.bytes)))
            lines.append(("1:get_hits", String(context.total(.getHits))))
            lines.append(("1:cmd_set", String(context.total(.cmdSet))))
        }
        lines.append(("active_slabs", storage.currentItems > 0 ? "1" : "0"))
        lines.append(("total_malloced", String(storage.bytes)))
        return lines
    }

    func listeners() -> [(String, String)] {
        context.settings.listenAddresses.enumerated().map { index, address in
            ("\(index):listen_addr", "tcp:\(address):\(context.boundPort.load(ordering: .relaxed))")
        }
    }
}
