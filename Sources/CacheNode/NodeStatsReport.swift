import CacheStorage
import EventLoop
import Glibc
import Synchronization

/// Builds the `stats` family of replies with memcached's field names, order and
/// meanings, so memcstat and the Prometheus memcached exporter read them.
struct NodeStatsReport {
    let context: NodeContext

    // memcached's `process_started` is set 62 s in the past, and its uptime
    // subtracts those 60 s again; the node's clock starts 2 s back.
    private var uptime: UInt32 { context.clock.now &- 2 }

    /// `stats`: memcached 1.6.18's fields in its order, as it prints them with
    /// default flags (plus `idle_kicks` with `-o idle_timeout`, as memcached).
    /// Fields for machinery the node does not have (pooled read and response
    /// buffers, slab mover, segmented LRU, log watchers, NAPI ids) carry the
    /// value memcached shows when that machinery is idle: 0.
    func general() -> [(String, String)] {
        let now = context.clock
        let process = ProcessUsage.statsLines()
        let storage = context.storage.statistics()
        func total(_ counter: Counter) -> String { String(context.total(counter)) }
        func load(_ value: borrowing Atomic<Int>) -> String { String(value.load(ordering: .relaxed)) }
        var lines: [(String, String)] = [
            ("pid", process.pid),
            ("uptime", String(uptime)),
            ("time", String(now.unixNow)),
            ("version", NodeFlags.version),
            ("libevent", EventLoop.libeventVersion),
            ("pointer_size", String(8 * MemoryLayout<UnsafeRawPointer>.size)),
            ("rusage_user", process.user),
            ("rusage_system", process.system),
            ("max_connections", String(context.settings.maxConnections)),
            ("curr_connections", load(context.currentConnections)),
            ("total_connections", load(context.totalConnections)),
            ("rejected_connections", load(context.rejectedConnections)),
            ("connection_structures", load(context.currentConnections)),
            // Each connection has its own input and output buffers: no pool to report.
            ("response_obj_oom", "0"),
            ("response_obj_count", "0"),
            ("response_obj_bytes", "0"),
            ("read_buf_count", "0"),
            ("read_buf_bytes", "0"),
            ("read_buf_bytes_free", "0"),
            ("read_buf_oom", "0"),
            ("reserved_fds", load(context.reservedDescriptors)),
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
            ("auth_cmds", load(context.authCommands)),
            ("auth_errors", load(context.authErrors)),
        ]
        if let tls = context.tls {
            lines.append(("ssl_handshake_errors", String(tls.handshakeErrors.withLock { $0 })))
            lines.append(("time_since_server_cert_refresh", String(tls.secondsSinceLoad)))
        }
        if context.settings.idleTimeoutSeconds > 0 {
            lines.append(("idle_kicks", total(.idleKicks)))
        }
        // hash_power_level: the table's size as memcached states it, log2 of all
        // buckets (shards grow one at a time, so this is the floor).
        let hashPower = storage.hashBuckets > 0 ? Int.bitWidth - 1 - storage.hashBuckets.leadingZeroBitCount : 0
        lines += [
            ("bytes_read", total(.bytesRead)),
            ("bytes_written", total(.bytesWritten)),
            ("limit_maxbytes", String(storage.memoryLimit)),
            ("accepting_conns", "1"),
            // Over the limit the node refuses a connection instead of pausing accept.
            ("listen_disabled_num", load(context.listenDisabled)),
            ("time_in_listen_disabled_us", load(context.listenDisabledMicroseconds)),
            ("threads", String(context.settings.threads)),
            ("conn_yields", total(.connYields)),
            ("hash_power_level", String(hashPower)),
            ("hash_bytes", String(storage.hashTableBytes)),
            ("hash_is_expanding", storage.hashExpanding ? "1" : "0"),
            // No slab classes, so no slab mover.
            ("slab_reassign_rescues", "0"),
            ("slab_reassign_chunk_rescues", "0"),
            ("slab_reassign_evictions_nomem", "0"),
            ("slab_reassign_inline_reclaim", "0"),
            ("slab_reassign_busy_items", "0"),
            ("slab_reassign_busy_deletes", "0"),
            ("slab_reassign_running", "0"),
            ("slabs_moved", "0"),
            // `lru_crawler crawl` runs to completion before it answers.
            ("lru_crawler_running", "0"),
            ("lru_crawler_starts", load(context.crawlerStarts)),
            ("lru_maintainer_juggles", load(context.maintenancePasses)),
            ("malloc_fails", "0"),
            // No `watch` log streams.
            ("log_worker_dropped", "0"),
            ("log_worker_written", "0"),
            ("log_watcher_skipped", "0"),
            ("log_watcher_sent", "0"),
            ("log_watchers", "0"),
            ("unexpected_napi_ids", "0"),
            ("round_robin_fallback", "0"),
            ("bytes", String(storage.bytes)),
            ("curr_items", String(storage.currentItems)),
            ("total_items", String(storage.totalItems)),
            // Free segments kept resident for any shard to take: the node's global page pool.
            ("slab_global_page_pool", String(storage.segmentsFreeResident)),
            ("expired_unfetched", String(storage.expiredUnfetched)),
            ("evicted_unfetched", String(storage.evictedUnfetched)),
            ("evicted_active", "0"),
            ("evictions", String(storage.evictions)),
            ("reclaimed", String(storage.reclaimed)),
            ("crawler_reclaimed", String(storage.crawlerReclaimed)),
            ("crawler_items_checked", String(storage.crawlerItemsChecked)),
            // One read-count CLOCK per shard (docs/eviction.md): no hot/warm/cold LRUs to move items between.
            ("lrutail_reflocked", "0"),
            ("moves_to_cold", "0"),
            ("moves_to_warm", "0"),
            ("moves_within_lru", "0"),
            ("direct_reclaims", "0"),
            ("lru_bumps_dropped", "0"),
        ]
        return lines
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
            // memcached prints the file's path when -Y is given.
            ("auth_enabled_ascii", settings.authFile ?? "no"),
            ("item_size_max", String(settings.itemSizeMax)),
            ("maxconns_fast", "yes"),
            ("flush_enabled", settings.flushEnabled ? "yes" : "no"),
            ("dump_enabled", settings.dumpingEnabled ? "yes" : "no"),
            ("idle_timeout", String(settings.idleTimeoutSeconds)),
            ("watch_enabled", settings.watchEnabled ? "yes" : "no"),
            ("drop_privileges", settings.user == nil ? "no" : "yes"),
            // As memcached prints them, -Z or not.
            ("ssl_enabled", settings.tlsEnabled ? "yes" : "no"),
            ("ssl_chain_cert", settings.tls.chainCertificate ?? "(null)"),
            ("ssl_key", settings.tls.privateKey ?? "(null)"),
            ("ssl_verify_mode", String(settings.tls.verifyMode)),
            ("ssl_keyformat", "1"),
            ("ssl_ciphers", settings.tls.ciphers ?? "NULL"),
            ("ssl_ca_cert", settings.tls.caCertificate ?? "NULL"),
            ("ssl_wbuf_size", String(settings.tlsWriteBufferKilobytes * 1024)),
            ("ssl_session_cache", settings.tlsSessionCache ? "yes" : "no"),
            ("ssl_kernel_tls", settings.tlsKernelOffload ? "yes" : "no"),
            ("ssl_min_version", ["tlsv1.0", "tlsv1.1", "tlsv1.2", "tlsv1.3"][settings.tls.minimumVersion]),
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
