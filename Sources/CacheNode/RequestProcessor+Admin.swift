import Buffers
import CacheStorage
import MemcacheProtocol

// Commands that run rarely: nothing here is on the hot path, so plain Swift
// strings and arrays are fine.
extension RequestProcessor {
    func administer(_ request: Request, in bytes: UnsafeRawBufferPointer, output: inout ByteBuffer,
                    outputLimit: Int, resume: inout Resumption, repliesHeld: Bool) -> Disposition {
        let arguments = KeyTokens(bytes, request.arguments).map { String(decoding: slice(bytes, $0), as: UTF8.self) }
        switch request.command {
        case .flushAll:
            flushAll(request, output: &output)
        case .version:
            output.append(string: "VERSION \(NodeFlags.version)\r\n")
        case .verbosity:
            // verbosity <level> [noreply]: the parser read the level as memcached
            // does (a malformed one never gets here; 4294967360 wraps to 64).
            context.verbosity.store(Int(min(request.numericArgument, 2)), ordering: .relaxed)
            reply("OK\r\n", noreply: request.noreply, output: &output)
        case .shutdown:
            return shutdown(arguments, output: &output)
        case .stats:
            stats(arguments, output: &output)
        case .cacheMemlimit:
            cacheMemlimit(megabytes: request.numericArgument, noreply: request.noreply, output: &output)
        case .slabs:
            slabs(arguments, noreply: request.noreply, output: &output)
        case .lru:
            lru(arguments, noreply: request.noreply, output: &output)
        case .lruCrawler:
            return lruCrawler(arguments, output: &output, outputLimit: outputLimit, resume: &resume, repliesHeld: repliesHeld)
        case .refreshCerts:
            // memcached answers with the error text itself, not a protocol error.
            guard let tls = context.tls else {
                output.append(ProtocolError.tlsNotEnabled.line)
                output.append("\r\n")
                break
            }
            do {
                try tls.reload()
                output.append("OK\r\n")
            } catch {
                output.append(string: "\(error)\r\n")
            }
        case .watch:
            // Live logging streams are not served; answer as memcached -W does.
            output.append("CLIENT_ERROR watch commands not allowed\r\n")
        default:
            // misbehave exists only in memcached's debug builds.
            output.append("ERROR\r\n")
        }
        return .proceed
    }

    // flush_all [delay] [noreply] -> OK
    private func flushAll(_ request: Request, output: inout ByteBuffer) {
        counters.add(.cmdFlush)
        guard context.settings.flushEnabled else {
            return reply("CLIENT_ERROR flush_all not allowed\r\n", noreply: request.noreply, output: &output)
        }
        let now = clock.now
        // memcached: a delay moves the boundary into the future; the boundary is
        // one second before the flush instant, and CAS makes same-second writes safe.
        let instant = request.exptime > 0 ? clock.expiry(fromExptime: request.exptime) : now
        let boundary = context.settings.casEnabled ? instant &- 1 : instant
        storage.flush(boundary: boundary, now: now)
        context.oldestLive.store(boundary, ordering: .relaxed)
        reply("OK\r\n", noreply: request.noreply, output: &output)
    }

    // shutdown [graceful]
    private func shutdown(_ arguments: [String], output: inout ByteBuffer) -> Disposition {
        guard context.settings.shutdownEnabled else {
            output.append("ERROR: shutdown not enabled\r\n")
            return .proceed
        }
        guard arguments.isEmpty || arguments == ["graceful"] else {
            output.append("CLIENT_ERROR invalid shutdown mode\r\n")
            return .proceed
        }
        context.requestShutdown()
        return .close
    }

    // cache_memlimit <megabytes> [noreply]: `megabytes` as the parser read it
    // (memcached's 32-bit reading; a malformed number was answered ERROR there).
    private func cacheMemlimit(megabytes: UInt64, noreply: Bool, output: inout ByteBuffer) {
        if megabytes < 8 {
            reply("MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n", noreply: noreply, output: &output)
        } else if megabytes > 1_000_000_000 {
            reply("MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n", noreply: noreply, output: &output)
        } else {
            storage.setMemoryLimit(Int(megabytes) << 20)
            reply("OK\r\n", noreply: noreply, output: &output)
        }
    }

    // slabs reassign <src> <dst> | slabs automove <0|1|2>: the node has no slab
    // classes to move; automove is accepted, reassign names no valid class.
    private func slabs(_ arguments: [String], noreply: Bool, output: inout ByteBuffer) {
        let words = arguments.filter { $0 != "noreply" }
        if words.count == 3 && words[0] == "reassign" {
            guard MemcachedNumber.int32(words[1]) != nil, MemcachedNumber.int32(words[2]) != nil else {
                return reply("CLIENT_ERROR bad command line format\r\n", noreply: noreply, output: &output)
            }
            return reply("BADCLASS invalid src or dst class id\r\n", noreply: noreply, output: &output)
        }
        if words.count >= 2 && words[0] == "automove" {
            guard let level = MemcachedNumber.uint32(words[1]) else {
                return reply("CLIENT_ERROR bad command line format\r\n", noreply: noreply, output: &output)
            }
            return reply(level <= 2 ? "OK\r\n" : "ERROR\r\n", noreply: noreply, output: &output)
        }
        output.append("ERROR\r\n")
    }

    // lru tune|mode|temp_ttl ...: memcached's LRU tuning; accepted, no effect here.
    private func lru(_ arguments: [String], noreply: Bool, output: inout ByteBuffer) {
        let words = arguments.filter { $0 != "noreply" }
        guard let first = words.first else { return output.append("ERROR\r\n") }
        switch first {
        case "tune" where words.count == 5, "mode" where words.count == 2, "temp_ttl" where words.count == 2:
            reply("OK\r\n", noreply: noreply, output: &output)
        default:
            output.append("ERROR\r\n")
        }
    }

    // lru_crawler metadump <classes> | crawl <classes> | tocrawl <n> | sleep <us> | enable | disable
    //
    // Exactly memcached's token counts: a trailing `noreply` is one token too
    // many, answered ERROR. Expired items are reclaimed in the background all
    // the time; `crawl` runs a pass now. `disable` keeps that reclaim going
    // (it is the node's memory management) but refuses crawl and metadump
    // until `enable`, as memcached does with its crawler thread stopped.
    private func lruCrawler(_ arguments: [String], output: inout ByteBuffer, outputLimit: Int,
                            resume: inout Resumption, repliesHeld: Bool) -> Disposition {
        switch (arguments.first, arguments.count) {
        case ("metadump", 2):
            return metadump(arguments[1], output: &output, outputLimit: outputLimit, resume: &resume, repliesHeld: repliesHeld)
        case ("crawl", 2):
            crawl(arguments[1], output: &output)
        case ("tocrawl", 2):
            output.append(MemcachedNumber.uint32(arguments[1]) != nil ? "OK\r\n" : "CLIENT_ERROR bad command line format\r\n")
        case ("sleep", 2):
            guard let microseconds = MemcachedNumber.uint32(arguments[1]) else {
                output.append("CLIENT_ERROR bad command line format\r\n")
                break
            }
            output.append(microseconds > 1_000_000 ? "CLIENT_ERROR sleep must be one second or less\r\n" : "OK\r\n")
        case ("enable", 1):
            // memcached cannot start a crawler thread that already runs.
            let wasEnabled = context.crawlerEnabled.exchange(true, ordering: .relaxed)
            output.append(wasEnabled ? "ERROR failed to start lru crawler thread\r\n" : "OK\r\n")
        case ("disable", 1):
            context.crawlerEnabled.store(false, ordering: .relaxed)
            output.append("OK\r\n")
        default:
            output.append("ERROR\r\n")
        }
        return .proceed
    }

    // lru_crawler crawl <classes>: one expiry pass over the whole store at once
    // (the node has no per-class LRUs); memcached's answers to the class list.
    private func crawl(_ classes: String, output: inout ByteBuffer) {
        guard context.crawlerEnabled.load(ordering: .relaxed) else {
            return output.append("CLIENT_ERROR lru crawler disabled\r\n")
        }
        switch CrawlerClasses.parse(classes) {
        case nil:
            output.append("BADCLASS invalid class id\r\n")
        case .hash:
            // memcached walks the hash table only for a metadump.
            output.append("ERROR an unknown error happened\r\n")
        case let selection? where selection.isEmpty:
            output.append("NOTSTARTED no items to crawl\r\n")
        default:
            context.crawlerStarts.wrappingAdd(1, ordering: .relaxed)
            _ = storage.reclaimExpired(now: clock.now, limit: Int.max)
            output.append("OK\r\n")
        }
    }

    private func stats(_ arguments: [String], output: inout ByteBuffer) {
        let report = NodeStatsReport(context: context)
        guard let subcommand = arguments.first else {
            return append(report.general(), output: &output)
        }
        switch subcommand {
        case "reset":
            context.workerCounters.forEach { $0.reset() }
            context.totalConnections.store(0, ordering: .relaxed)
            context.rejectedConnections.store(0, ordering: .relaxed)
            context.crawlerStarts.store(0, ordering: .relaxed)
            context.maintenancePasses.store(0, ordering: .relaxed)
            storage.resetStatistics()
            context.prefixStatistics.clear()
            output.append("RESET\r\n")
        case "settings":
            append(report.settings(), output: &output)
        case "items":
            append(report.items(), output: &output)
        case "slabs":
            append(report.slabs(), output: &output)
        case "sizes":
            append([("sizes_status", "disabled")], output: &output)
        case "sizes_enable", "sizes_disable":
            append([("sizes_status", "disabled")], output: &output)
        case "conns":
            append(report.listeners(), output: &output)
        case "detail":
            // stats detail on|off|dump (anything after the third word is ignored)
            switch arguments.count > 1 ? arguments[1] : "" {
            case "on":
                context.prefixStatistics.setEnabled(true)
                output.append("OK\r\n")
            case "off":
                context.prefixStatistics.setEnabled(false)
                output.append("OK\r\n")
            case "dump":
                context.prefixStatistics.dump().withUnsafeBytes { output.append($0) }
            default:
                output.append("CLIENT_ERROR usage: stats detail on|off|dump\r\n")
            }
        case "cachedump":
            guard context.settings.dumpingEnabled else {
                return output.append("CLIENT_ERROR stats cachedump not allowed\r\n")
            }
            guard arguments.count >= 3 else { return output.append("CLIENT_ERROR bad command line\r\n") }
            guard let classID = MemcachedNumber.uint32(arguments[1]), MemcachedNumber.uint32(arguments[2]) != nil else {
                return output.append("CLIENT_ERROR bad command line format\r\n")
            }
            guard classID < 64 else { return output.append("CLIENT_ERROR Illegal slab id\r\n") }
            // Items are not kept in slab classes, so no class has items to list.
            output.append("END\r\n")
        default:
            output.append("ERROR\r\n")
        }
    }

    private func append(_ lines: [(String, String)], output: inout ByteBuffer) {
        output.append(string: StatsReply.render(lines))
    }
}
