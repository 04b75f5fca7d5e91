import Buffers
import MemcacheProtocol

/// Decides where each request goes (the README's "What the proxy does with
/// each request"; docs/architecture.md):
///
/// | request                                   | nodes                          | the client gets                 |
/// |-------------------------------------------|--------------------------------|---------------------------------|
/// | get/gets/gat/gats/mg/me, one key          | primary, then next replica     | that node's answer              |
/// | get... with many keys                     | one batch per node             | values in request order, END    |
/// | set/add/replace/append/prepend/delete/    | every live replica             | the first live replica's answer |
/// | touch/incr/decr/ms/md/ma                  |                                |                                 |
/// | cas, ms with C                            | first live replica, then a     | that node's answer              |
/// |                                           | copy to the others             |                                 |
/// | flush_all                                 | every node                     | OK when all said OK             |
/// | version/verbosity/quit/mn/stats           | the proxy                      |                                 |
///
/// Requests reach nodes without classic `noreply` (a quiet meta request keeps
/// its `q` and is followed by `mn`), so every request gets a reply with a
/// known end and replies stay matched to requests; the proxy then drops what
/// the client asked not to see.
enum Router {
    static func route(_ request: Request, in bytes: UnsafeRawBufferPointer, proxied: ProxiedRequest, session: ClientSession) {
        let worker = session.worker
        let counters = worker.counters
        proxied.command = request.command
        switch request.command {
        case .get, .gets, .gat, .gats:
            var keyCount = 0
            for _ in KeyTokens(bytes, request.keys) { keyCount += 1 }
            counters.add(request.command == .gat || request.command == .gats ? .cmdTouch : .cmdGet, UInt64(keyCount))
            if keyCount == 0 {
                // `gat <exptime>` with no key: memcached answers an empty result.
                proxied.complete(line: "END")
            } else if keyCount == 1 {
                routeRead(request, in: bytes, proxied: proxied, worker: worker)
            } else {
                routeMultiGet(request, in: bytes, proxied: proxied, worker: worker)
            }
        case .metaGet:
            counters.add(.cmdGet)
            routeRead(request, in: bytes, proxied: proxied, worker: worker)
        case .metaDebug:
            counters.add(.cmdMeta)
            routeRead(request, in: bytes, proxied: proxied, worker: worker)
        case .set, .add, .replace, .append, .prepend:
            counters.add(.cmdSet)
            routeWrite(request, in: bytes, proxied: proxied, worker: worker)
        case .delete, .metaDelete:
            counters.add(.cmdDelete)
            routeWrite(request, in: bytes, proxied: proxied, worker: worker)
        case .touch:
            counters.add(.cmdTouch)
            routeWrite(request, in: bytes, proxied: proxied, worker: worker)
        case .incr, .decr, .metaArithmetic:
            counters.add(.cmdArithmetic)
            routeWrite(request, in: bytes, proxied: proxied, worker: worker)
        case .metaSet:
            counters.add(.cmdSet)
            if request.meta.has(UInt8(ascii: "C")) {
                routeCompareAndSwap(request, in: bytes, proxied: proxied, worker: worker)
            } else {
                routeWrite(request, in: bytes, proxied: proxied, worker: worker)
            }
        case .cas:
            counters.add(.cmdSet)
            routeCompareAndSwap(request, in: bytes, proxied: proxied, worker: worker)
        case .flushAll:
            counters.add(.cmdFlush)
            routeFlushAll(request, in: bytes, proxied: proxied, worker: worker)
        case .metaNoop:
            proxied.complete(line: "MN")
        case .version:
            proxied.complete(text: "VERSION \(ProxyStatsReport.version)")
        case .verbosity:
            if request.noreply { proxied.complete() } else { proxied.complete(line: "OK") }
        case .quit:
            proxied.closesSession = true
            proxied.complete()
        case .stats:
            // Answered once every earlier request has its reply, so a pipelined
            // `stats` counts what came before it, as on memcached.
            let arguments = KeyTokens(bytes, request.arguments).map { String(decoding: bytes[$0], as: UTF8.self) }
            proxied.whenFirst = { proxied in ProxyStatsReport.answer(arguments, proxied: proxied, worker: worker) }
        case .shutdown:
            proxied.complete(line: "ERROR: shutdown not enabled")
        case .refreshCerts:
            proxied.complete(line: ProtocolError.tlsNotEnabled.line)
        case .cacheMemlimit, .slabs, .lru, .lruCrawler, .watch, .misbehave:
            // Node administration is done on each node directly; the proxy holds no
            // items and answers as memcached answers these (ProxyStatsReport.administer).
            let arguments = KeyTokens(bytes, request.arguments).map { String(decoding: bytes[$0], as: UTF8.self) }
            ProxyStatsReport.administer(request, arguments: arguments, proxied: proxied)
        }
    }

    /// The lane a request's node calls take: multi-key gets have their own.
    static func lane(of request: Request, in bytes: UnsafeRawBufferPointer) -> Lane {
        guard request.command.isMultiKeyRetrieval else { return .requests }
        var keys = KeyTokens(bytes, request.keys)
        _ = keys.next()
        return keys.next() == nil ? .requests : .bulk
    }

    /// A value over the item size limit never reaches a node; like memcached, the
    /// key's old value is removed (for set and ms) so a stale one cannot be read.
    static func routeTooLarge(_ request: Request, in bytes: UnsafeRawBufferPointer, proxied: ProxiedRequest, session: ClientSession) {
        let worker = session.worker
        let quiet = request.command != .metaSet && request.noreply
        if request.command == .set || request.command == .metaSet {
            let key = UnsafeRawBufferPointer(rebasing: bytes[request.key])
            let base64 = request.command == .metaSet && request.meta.has(UInt8(ascii: "b"))
            proxied.wire.append(key)
            proxied.key = 0..<key.count
            proxied.keyIsBase64 = base64
            if proxied.decodeKeyIfNeeded() {
                let topology = worker.topology
                let route = topology.route(of: proxied.placementKey, now: worker.now)
                for index in Array(route.writes) + Array(route.invalidations) {
                    ReplicaCopy.delete(key, base64: base64, at: topology.nodes[index], worker: worker, session: session)
                }
            }
        }
        if quiet { proxied.complete() } else { proxied.complete(line: ProtocolError.objectTooLarge.line) }
    }

    // MARK: Reads

    private static func routeRead(_ request: Request, in bytes: UnsafeRawBufferPointer, proxied: ProxiedRequest,
                                  worker: ProxyWorker) {
        guard forwardKeyed(request, in: bytes, into: proxied, worker: worker) else { return }
        proxied.work = .read
        proxied.touchExptime = touchedExptime(request)
        proxied.sendRead()
    }

    private static func routeMultiGet(_ request: Request, in bytes: UnsafeRawBufferPointer, proxied: ProxiedRequest, worker: ProxyWorker) {
        // The request keeps the command's prefix (`get `, `gat 300 `) and the keys.
        RequestEncoder.appendRetrievalStart(request.command, exptime: request.exptime, to: &proxied.wire)
        proxied.wire.append(byte: UInt8(ascii: " "))
        let prefix = 0..<proxied.wire.readableCount
        var keys: [Range<Int>] = []
        for key in KeyTokens(bytes, request.keys) {
            let start = proxied.wire.readableCount
            proxied.wire.append(UnsafeRawBufferPointer(rebasing: bytes[key]))
            keys.append(start..<proxied.wire.readableCount)
        }
        proxied.topology = worker.topology
        proxied.shape = .retrieval
        proxied.touchExptime = touchedExptime(request)
        let state = MultiGet(proxied: proxied, prefix: prefix, keys: keys)
        proxied.work = .multiGet(state)
        state.start()
    }

    /// The expiry a read sets where it is served (gat, gats, mg with T), which
    /// the key's other replicas get too.
    private static func touchedExptime(_ request: Request) -> Int64? {
        switch request.command {
        case .gat, .gats: return request.exptime
        case .metaGet: return request.meta.has(UInt8(ascii: "T")) ? request.meta.ttl : nil
        default: return nil
        }
    }

    // MARK: Writes

    private static func routeWrite(_ request: Request, in bytes: UnsafeRawBufferPointer, proxied: ProxiedRequest, worker: ProxyWorker) {
        guard forwardKeyed(request, in: bytes, into: proxied, worker: worker) else { return }
        proxied.work = .write
        proxied.fenceStripe = KeyFence.stripe(of: proxied.placementKey)
        if migrateFirst(request, proxied: proxied, worker: worker, then: { $0.sendWrite() }) { return }
        proxied.sendWrite()
    }

    /// A plain overwrite (set, ms in set mode without a CAS) does not depend
    /// on the stored value. Every other write could leave the key absent
    /// (delete) or answer from what is stored (add, incr, append, cas, touch, ...).
    private static func overwrites(_ request: Request) -> Bool {
        request.command == .set
            || (request.command == .metaSet && !request.meta.has(UInt8(ascii: "C"))
                && (request.meta.mode == 0 || request.meta.mode == UInt8(ascii: "S")))
    }

    /// A key that moved (a membership change) or whose node came back empty is
    /// brought to its replicas before a command that depends on the stored
    /// value (add, incr, append, delete, touch, cas, ...), so it answers as
    /// memcached would. A plain overwrite needs no copy. Returns true when the
    /// command waits for a migration.
    private static func migrateFirst(_ request: Request, proxied: ProxiedRequest, worker: ProxyWorker,
                                     then next: @escaping (ProxiedRequest) -> Void) -> Bool {
        guard !overwrites(request), let topology = proxied.topology,
              let plan = KeyMigration.plan(for: proxied.route, topology: topology, now: worker.now)
        else { return false }
        return proxied.migrate(plan, then: next)
    }

    private static func routeCompareAndSwap(_ request: Request, in bytes: UnsafeRawBufferPointer, proxied: ProxiedRequest, worker: ProxyWorker) {
        guard forwardKeyed(request, in: bytes, into: proxied, worker: worker) else { return }
        proxied.work = .compareAndSwap
        if request.command == .metaSet {
            proxied.copy.clientFlags = request.meta.clientFlags
            proxied.copy.exptime = request.meta.has(UInt8(ascii: "T")) ? request.meta.ttl : 0
            let mode = request.meta.mode
            proxied.copy.readBack = mode == UInt8(ascii: "A") || mode == UInt8(ascii: "P")
        } else {
            proxied.copy.clientFlags = request.flags
            proxied.copy.exptime = request.exptime
        }
        proxied.fenceStripe = KeyFence.stripe(of: proxied.placementKey)
        if migrateFirst(request, proxied: proxied, worker: worker, then: { $0.sendCompareAndSwap() }) { return }
        proxied.sendCompareAndSwap()
    }

    private static func routeFlushAll(_ request: Request, in bytes: UnsafeRawBufferPointer, proxied: ProxiedRequest, worker: ProxyWorker) {
        guard worker.topology.configuration.flushAllEnabled else {
            if request.noreply { proxied.complete() } else { proxied.complete(line: "CLIENT_ERROR flush_all not allowed") }
            return
        }
        forward(request, in: bytes, into: proxied)
        proxied.topology = worker.topology
        proxied.work = .flushAll
        // A copy under way when the flush starts removes what it added.
        worker.context.fence.flushes.wrappingAdd(1, ordering: .releasing)
        proxied.sendFlushAll()
        if request.noreply && !proxied.isComplete {
            proxied.reply.removeAll()
            proxied.complete()
        }
    }

    // MARK: Forwarded bytes

    private static func isMeta(_ command: Command) -> Bool {
        switch command {
        case .metaGet, .metaSet, .metaDelete, .metaArithmetic, .metaDebug, .metaNoop: return true
        default: return false
        }
    }

    /// Writes the request into the request as nodes will get it: rebuilt from what
    /// the parser parsed (see `RequestEncoder.appendForwarded`), classic
    /// `noreply` left out, and a quiet meta request followed by `mn`, so every
    /// request a node gets has exactly one reply with a known end. Sets the
    /// request's key, value and reply shape.
    private static func forward(_ request: Request, in bytes: UnsafeRawBufferPointer, into proxied: ProxiedRequest) {
        let layout = RequestEncoder.appendForwarded(request, in: bytes, to: &proxied.wire)
        let quiet = isMeta(request.command) && request.meta.has(UInt8(ascii: "q"))
        if quiet { RequestEncoder.appendMetaNoop(to: &proxied.wire) }
        proxied.key = layout.key
        proxied.copy.data = layout.data
        proxied.shape = ReplyShape.of(request.command, quiet: quiet)
        proxied.noreply = request.noreply
    }

    /// `forward` for a request on one key, which it then places on the ring: by
    /// its decoded bytes when it came in base64 (meta `b`), so the same key sent
    /// as text or as base64 lands on the same nodes. False (and the request
    /// answered) when the key cannot be decoded.
    private static func forwardKeyed(_ request: Request, in bytes: UnsafeRawBufferPointer, into proxied: ProxiedRequest,
                                     worker: ProxyWorker) -> Bool {
        forward(request, in: bytes, into: proxied)
        proxied.keyIsBase64 = isMeta(request.command) && request.meta.has(UInt8(ascii: "b"))
        guard proxied.decodeKeyIfNeeded() else {
            proxied.complete(line: ProtocolError.metaKeyDecoding.line)
            return false
        }
        let topology = worker.topology
        proxied.topology = topology
        proxied.route = topology.route(of: proxied.placementKey, now: worker.now)
        return true
    }
}
