import Buffers
import MemcacheProtocol

/// Decides where each request goes, following the design's routing table:
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
/// Requests reach nodes with `noreply` and meta `q` removed, so every request
/// gets a reply and replies stay matched to requests; the proxy then drops what
/// the client asked not to see.
enum Router {
    static func route(_ request: Request, in bytes: UnsafeRawBufferPointer, slot: ReplySlot, session: ClientSession) {
        let worker = session.worker
        let counters = worker.counters
        slot.command = request.command
        switch request.command {
        case .get, .gets, .gat, .gats:
            var keyCount = 0
            for _ in KeyTokens(bytes, request.keys) { keyCount += 1 }
            counters.add(request.command == .gat || request.command == .gats ? .cmdTouch : .cmdGet, UInt64(keyCount))
            if keyCount == 0 {
                // `gat <exptime>` with no key: memcached answers an empty result.
                slot.complete(line: "END")
            } else if keyCount == 1 {
                routeRead(request, in: bytes, slot: slot, worker: worker, shape: .retrieval)
            } else {
                routeMultiGet(request, in: bytes, slot: slot, worker: worker)
            }
        case .metaGet:
            counters.add(.cmdGet)
            if request.meta.has(UInt8(ascii: "q")) { slot.quiet = .hideMiss }
            routeRead(request, in: bytes, slot: slot, worker: worker, shape: .single)
        case .metaDebug:
            counters.add(.cmdMeta)
            routeRead(request, in: bytes, slot: slot, worker: worker, shape: .single)
        case .set, .add, .replace, .append, .prepend:
            counters.add(.cmdSet)
            routeWrite(request, in: bytes, slot: slot, worker: worker)
        case .delete, .metaDelete:
            counters.add(.cmdDelete)
            routeWrite(request, in: bytes, slot: slot, worker: worker)
        case .touch:
            counters.add(.cmdTouch)
            routeWrite(request, in: bytes, slot: slot, worker: worker)
        case .incr, .decr, .metaArithmetic:
            counters.add(.cmdArithmetic)
            routeWrite(request, in: bytes, slot: slot, worker: worker)
        case .metaSet:
            counters.add(.cmdSet)
            if request.meta.has(UInt8(ascii: "C")) {
                routeCompareAndSwap(request, in: bytes, slot: slot, worker: worker)
            } else {
                routeWrite(request, in: bytes, slot: slot, worker: worker)
            }
        case .cas:
            counters.add(.cmdSet)
            routeCompareAndSwap(request, in: bytes, slot: slot, worker: worker)
        case .flushAll:
            counters.add(.cmdFlush)
            routeFlushAll(request, in: bytes, slot: slot, worker: worker)
        case .metaNoop:
            slot.complete(line: "MN")
        case .version:
            slot.complete(text: "VERSION \(ProxyStatsReport.version)")
        case .verbosity:
            if request.noreply { slot.complete() } else { slot.complete(line: "OK") }
        case .quit:
            slot.closesSession = true
            slot.complete()
        case .stats:
            // Answered once every earlier request has its reply, so a pipelined
            // `stats` counts what came before it, as on memcached.
            let arguments = KeyTokens(bytes, request.arguments).map { String(decoding: bytes[$0], as: UTF8.self) }
            slot.whenFirst = { slot in ProxyStatsReport.answer(arguments, slot: slot, worker: worker) }
        case .shutdown:
            slot.complete(line: "ERROR: shutdown not enabled")
        case .cacheMemlimit, .slabs, .lru, .lruCrawler, .watch, .misbehave:
            // Node administration is done on each node directly; the proxy holds no
            // items and answers as memcached answers these (ProxyStatsReport.administer).
            let arguments = KeyTokens(bytes, request.arguments).map { String(decoding: bytes[$0], as: UTF8.self) }
            ProxyStatsReport.administer(request, arguments: arguments, slot: slot)
        }
    }

    /// A value over the item size limit never reaches a node; like memcached, the
    /// key's old value is removed (for set and ms) so a stale one cannot be read.
    static func routeTooLarge(_ request: Request, in bytes: UnsafeRawBufferPointer, slot: ReplySlot, session: ClientSession) {
        let worker = session.worker
        let quiet = request.command != .metaSet && request.noreply
        if request.command == .set || request.command == .metaSet {
            let key = UnsafeRawBufferPointer(rebasing: bytes[request.key])
            let topology = worker.topology
            let replicas = topology.replicaSet(of: key)
            for position in 0..<replicas.count {
                worker.backend(for: topology.nodes[replicas[position]], session: session)?
                    .send(call: worker.discard, tag: 0, shape: .single) { output in
                        output.append("delete ")
                        output.append(key)
                        output.append("\r\n")
                    }
            }
        }
        if quiet { slot.complete() } else { slot.complete(line: ProtocolError.objectTooLarge.line) }
    }

    // MARK: Reads

    private static func routeRead(_ request: Request, in bytes: UnsafeRawBufferPointer, slot: ReplySlot,
                                  worker: ProxyWorker, shape: ReplyShape) {
        let keyRange = request.command.isMultiKeyRetrieval ? firstKey(request, in: bytes) : request.key
        copyForwarded(request, in: bytes, into: slot, key: keyRange)
        let topology = worker.topology
        slot.topology = topology
        slot.replicas = topology.replicaSet(of: slot.keyBytes)
        slot.shape = shape
        slot.work = .read
        slot.sendRead()
    }

    private static func firstKey(_ request: Request, in bytes: UnsafeRawBufferPointer) -> Range<Int> {
        var tokens = KeyTokens(bytes, request.keys)
        return tokens.next() ?? request.keys
    }

    private static func routeMultiGet(_ request: Request, in bytes: UnsafeRawBufferPointer, slot: ReplySlot, worker: ProxyWorker) {
        // The request keeps the command line's prefix (`get `, `gat 300 `) and the keys.
        let lineStart = request.line.lowerBound
        slot.request.append(UnsafeRawBufferPointer(rebasing: bytes[lineStart..<request.keys.lowerBound]))
        let prefix = 0..<slot.request.readableCount
        var keys: [Range<Int>] = []
        for key in KeyTokens(bytes, request.keys) {
            let start = slot.request.readableCount
            slot.request.append(UnsafeRawBufferPointer(rebasing: bytes[key]))
            keys.append(start..<slot.request.readableCount)
        }
        slot.topology = worker.topology
        slot.shape = .retrieval
        let state = MultiGet(slot: slot, prefix: prefix, keys: keys)
        slot.work = .multiGet(state)
        state.start()
    }

    // MARK: Writes

    private static func routeWrite(_ request: Request, in bytes: UnsafeRawBufferPointer, slot: ReplySlot, worker: ProxyWorker) {
        copyForwarded(request, in: bytes, into: slot, key: request.key)
        let topology = worker.topology
        slot.topology = topology
        slot.replicas = topology.replicaSet(of: slot.keyBytes)
        slot.work = .write
        if isMeta(request.command) && request.meta.has(UInt8(ascii: "q")) { slot.quiet = .hideSuccess }
        if request.noreply { slot.quiet = .hideAll }
        if migrateFirst(request, slot: slot, worker: worker, then: { $0.sendWrite() }) { return }
        slot.sendWrite()
        // noreply: nothing will be written back, so later replies need not wait.
        if request.noreply && !slot.isComplete {
            slot.reply.removeAll()
            slot.complete()
        }
    }

    /// A key that moved (scale-out) or whose node came back empty is brought to
    /// its replicas before a command that depends on the stored value (add,
    /// incr, append, delete, touch, cas, ...), so it answers as memcached would.
    /// A plain overwrite needs no copy, only the old owner's copy dropped.
    /// Returns true when the command waits for a migration.
    private static func migrateFirst(_ request: Request, slot: ReplySlot, worker: ProxyWorker,
                                     then next: @escaping (ReplySlot) -> Void) -> Bool {
        guard let topology = slot.topology,
              let source = KeyMigration.source(for: slot.keyBytes, replicas: slot.replicas, topology: topology, now: worker.now)
        else { return false }
        let overwrites = request.command == .set
            || (request.command == .metaSet && !request.meta.has(UInt8(ascii: "C"))
                && (request.meta.mode == 0 || request.meta.mode == UInt8(ascii: "S")))
        if overwrites {
            if source.dropAfterCopy, let backend = worker.backend(for: source.node, session: nil) {
                let key = slot.keyBytes
                backend.send(call: worker.discard, tag: 0, shape: .single) { output in
                    output.append("delete ")
                    output.append(key)
                    output.append("\r\n")
                }
            }
            return false
        }
        return slot.migrate(from: source, then: next)
    }

    private static func routeCompareAndSwap(_ request: Request, in bytes: UnsafeRawBufferPointer, slot: ReplySlot, worker: ProxyWorker) {
        copyForwarded(request, in: bytes, into: slot, key: request.key)
        let topology = worker.topology
        slot.topology = topology
        slot.replicas = topology.replicaSet(of: slot.keyBytes)
        slot.work = .compareAndSwap
        if request.command == .metaSet {
            if request.meta.has(UInt8(ascii: "q")) { slot.quiet = .hideSuccess }
            slot.copy.clientFlags = request.meta.clientFlags
            slot.copy.exptime = request.meta.has(UInt8(ascii: "T")) ? request.meta.ttl : 0
            let mode = request.meta.mode
            slot.copy.readBack = mode == UInt8(ascii: "A") || mode == UInt8(ascii: "P")
        } else {
            slot.copy.clientFlags = request.flags
            slot.copy.exptime = request.exptime
        }
        if request.noreply { slot.quiet = .hideAll }
        if migrateFirst(request, slot: slot, worker: worker, then: { $0.sendCompareAndSwap() }) { return }
        slot.sendCompareAndSwap()
        if request.noreply && !slot.isComplete {
            slot.reply.removeAll()
            slot.complete()
        }
    }

    private static func routeFlushAll(_ request: Request, in bytes: UnsafeRawBufferPointer, slot: ReplySlot, worker: ProxyWorker) {
        guard worker.topology.configuration.flushAllEnabled else {
            if request.noreply { slot.complete() } else { slot.complete(line: "CLIENT_ERROR flush_all not allowed") }
            return
        }
        copyForwarded(request, in: bytes, into: slot, key: 0..<0)
        slot.topology = worker.topology
        slot.work = .flushAll
        slot.sendFlushAll()
        if request.noreply && !slot.isComplete {
            slot.reply.removeAll()
            slot.complete()
        }
    }

    // MARK: Forwarded bytes

    private static func isMeta(_ command: Command) -> Bool {
        switch command {
        case .metaGet, .metaSet, .metaDelete, .metaArithmetic, .metaDebug, .metaNoop: return true
        default: return false
        }
    }

    /// Copies the request into the slot as nodes will get it: the line without
    /// `noreply` (classic) or `q` (meta), then the data block. `key` (a range of
    /// `bytes`) is found again in the copy.
    private static func copyForwarded(_ request: Request, in bytes: UnsafeRawBufferPointer, into slot: ReplySlot, key: Range<Int>) {
        let line = request.line
        var keyOffset = -1
        func appendToken(_ token: Range<Int>, first: Bool) {
            if !first { slot.request.append(byte: UInt8(ascii: " ")) }
            if token == key { keyOffset = slot.request.readableCount }
            slot.request.append(UnsafeRawBufferPointer(rebasing: bytes[token]))
        }
        var first = true
        let meta = isMeta(request.command)
        var tokens = Array(KeyTokens(bytes, line))
        if request.noreply && !meta, let last = tokens.last,
           UnsafeRawBufferPointer(rebasing: bytes[last]).elementsEqual("noreply".utf8) {
            tokens.removeLast()
        }
        for token in tokens {
            if meta && token.count == 1 && bytes[token.lowerBound] == UInt8(ascii: "q") && token.lowerBound >= request.meta.tokens.lowerBound {
                continue
            }
            appendToken(token, first: first)
            first = false
        }
        slot.request.append("\r\n")
        if request.command.carriesData {
            let dataStart = slot.request.readableCount
            slot.request.append(UnsafeRawBufferPointer(rebasing: bytes[request.data]))
            slot.copy.data = dataStart..<slot.request.readableCount
            slot.request.append("\r\n")
        }
        slot.key = keyOffset >= 0 ? keyOffset..<(keyOffset + key.count) : 0..<0
    }
}
