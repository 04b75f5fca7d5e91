import Buffers
import CacheStorage
import MemcacheProtocol

// lru_crawler metadump all|hash|<class>[,<class>...]
// -> (key=<key> exp=<t> la=<t> cas=<n> fetch=<yes|no> cls=<n> size=<n>\n)* END\r\n
//
// memcached's crawler thread writes the dump to the socket itself; here the
// dump is a request like a multi-get: it walks the store (ItemStore.walk, a
// few hash buckets per shard lock), appends lines until the output holds
// `outputLimit` bytes, answers `.suspended` and goes on from its cursor once
// the client has read them. So a dump of millions of items costs one output
// buffer, a slow reader costs nothing while it reads, and no lock is held
// while waiting for the socket.
extension RequestProcessor {
    /// Store buckets and items one turn may visit before it lets the worker's
    /// other connections in, even when the class filter keeps the output empty.
    static let metadumpWorkPerTurn = 50_000

    func metadump(_ classes: String, output: inout ByteBuffer, outputLimit: Int,
                  resume: inout Resumption, repliesHeld: Bool) -> Disposition {
        var cursor = StoreCursor()
        if case .metadump(let saved) = resume {
            cursor = saved
        } else {
            // memcached's checks, in its order.
            guard context.crawlerEnabled.load(ordering: .relaxed) else {
                output.append("CLIENT_ERROR lru crawler disabled\r\n")
                return .proceed
            }
            guard context.settings.dumpingEnabled else {
                output.append("ERROR metadump not allowed\r\n")
                return .proceed
            }
            guard !repliesHeld else {
                // memcached's crawler writes to the socket directly, so replies
                // still queued before it would come out after the dump.
                output.append("ERROR cannot pipeline other commands before metadump\r\n")
                return .proceed
            }
        }
        guard let selection = CrawlerClasses.parse(classes) else {
            output.append("BADCLASS invalid class id\r\n")
            return .proceed
        }
        if selection.isEmpty {
            output.append("NOTSTARTED no items to crawl\r\n")
            return .proceed
        }
        if resume == .none { context.crawlerStarts.wrappingAdd(1, ordering: .relaxed) }

        let now = clock.now
        let bucketsPerStep = 64
        var work = 0
        while !cursor.isFinished {
            if output.readableCount >= outputLimit || work >= RequestProcessor.metadumpWorkPerTurn {
                resume = .metadump(cursor)
                return .suspended
            }
            work += bucketsPerStep + storage.walk(&cursor, now: now, buckets: bucketsPerStep) { item in
                appendMetadumpLine(item, selection: selection, output: &output)
            }
        }
        resume = .none
        output.append(MetadumpLine.end)
        return .dumped
    }

    /// The item's line, if its class is selected. Runs under the shard lock.
    /// Class and size are memcached's for an item of this key, value and
    /// flags, as `me` reports them: the node has no slab classes of its own.
    private func appendMetadumpLine(_ item: ItemRef, selection: CrawlerClasses, output: inout ByteBuffer) {
        let size = MemcachedItemSize.total(keyLength: item.key.count, valueLength: item.value.count,
                                           clientFlags: item.clientFlags, casEnabled: context.settings.casEnabled)
        let slabClass = MemcachedItemSize.slabClass(forTotal: size)
        guard selection.contains(slabClass) else { return }
        // memcached prints its relative times plus its start time: Unix times.
        let started = clock.processStarted
        MetadumpLine.append(key: item.key, expires: item.expiry == 0 ? nil : started + Int64(item.expiry),
                            lastAccess: started + Int64(item.lastAccess), cas: item.cas, fetched: item.wasFetched,
                            slabClass: slabClass, size: size, to: &output)
    }
}
