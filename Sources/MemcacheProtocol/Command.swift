/// The commands of memcached's text and meta protocols (1.6.18), by their first token.
public enum Command: UInt8, Sendable, CaseIterable {
    // Retrieval: `get|gets <key>+`, `gat|gats <exptime> <key>+`. `bget` parses as `get`.
    case get, gets, gat, gats
    // Storage: a data block of `bytes` follows the line.
    case set, add, replace, append, prepend, cas
    case delete, incr, decr, touch
    case flushAll, version, verbosity, quit, shutdown, stats, cacheMemlimit
    // Administration memcached accepts; the node answers them as memcached would.
    case slabs, lru, lruCrawler, watch, misbehave, refreshCerts
    // Meta protocol.
    case metaGet, metaSet, metaDelete, metaArithmetic, metaNoop, metaDebug

    /// Commands whose line is followed by a data block.
    @inlinable public var carriesData: Bool {
        switch self {
        case .set, .add, .replace, .append, .prepend, .cas, .metaSet: return true
        default: return false
        }
    }

    /// Commands that read keys through `Request.keys` (one or more keys).
    @inlinable public var isMultiKeyRetrieval: Bool {
        switch self {
        case .get, .gets, .gat, .gats: return true
        default: return false
        }
    }
}
