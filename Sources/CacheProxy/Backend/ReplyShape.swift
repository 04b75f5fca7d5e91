import MemcacheProtocol

/// How a node's reply to one request is framed, and what it may contain. A
/// reply unit the request could not have caused means the connection is out
/// of step (the node and the proxy framed something differently): the
/// connection is closed rather than the unit handed to the wrong request.
/// `ERROR`, `CLIENT_ERROR` and `SERVER_ERROR` may answer any request.
public enum ReplyShape: Sendable {
    /// `VALUE` units up to `END` (get, gets, gat, gats).
    case retrieval
    /// `STAT` lines up to `END`.
    case stats
    /// set, add, replace, append, prepend, cas: `STORED`, `NOT_STORED`, `EXISTS`, `NOT_FOUND`.
    case storage
    /// delete: `DELETED`, `NOT_FOUND`.
    case deletion
    /// touch: `TOUCHED`, `NOT_FOUND`.
    case touch
    /// incr, decr: a number, `NOT_FOUND`.
    case arithmetic
    /// flush_all: `OK`.
    case ok
    /// version: `VERSION ...`.
    case version
    /// mg, ms, md, ma: one of `HD`, `VA`, `EN`, `NF`, `NS`, `EX`.
    case meta
    /// me: `ME ...` or `EN`.
    case metaDebug
    /// A quiet meta request followed by `mn`: what the node did not hide, then `MN`.
    case quietMeta

    public enum Verdict: Sendable {
        /// The unit belongs to the reply, which goes on.
        case more
        /// The unit completes the reply.
        case last
        /// No reply of this shape contains the unit.
        case outOfStep
    }

    @inline(__always)
    public func judge(_ kind: ResponseKind) -> Verdict {
        switch kind {
        case .error, .clientError, .serverError:
            // A quiet request's error is followed by the MN that ends its reply.
            return self == .quietMeta ? .more : .last
        default:
            break
        }
        switch self {
        case .retrieval:
            return kind == .value ? .more : kind == .end ? .last : .outOfStep
        case .stats:
            return kind == .stat ? .more : kind == .end ? .last : .outOfStep
        case .storage:
            return kind == .stored || kind == .notStored || kind == .exists || kind == .notFound ? .last : .outOfStep
        case .deletion:
            return kind == .deleted || kind == .notFound ? .last : .outOfStep
        case .touch:
            return kind == .touched || kind == .notFound ? .last : .outOfStep
        case .arithmetic:
            return kind == .number || kind == .notFound ? .last : .outOfStep
        case .ok:
            return kind == .ok ? .last : .outOfStep
        case .version:
            return kind == .version ? .last : .outOfStep
        case .meta:
            return ReplyShape.isMetaStatus(kind) ? .last : .outOfStep
        case .metaDebug:
            return kind == .metaDebug || kind == .metaMiss ? .last : .outOfStep
        case .quietMeta:
            return kind == .metaNoop ? .last : ReplyShape.isMetaStatus(kind) ? .more : .outOfStep
        }
    }

    private static func isMetaStatus(_ kind: ResponseKind) -> Bool {
        switch kind {
        case .metaHit, .metaValue, .metaMiss, .metaNotFound, .metaNotStored, .metaExists: return true
        default: return false
        }
    }

    /// The shape of the reply to a forwarded request; `quiet` when it carries
    /// meta `q` (and is followed by `mn`).
    public static func of(_ command: Command, quiet: Bool) -> ReplyShape {
        switch command {
        case .get, .gets, .gat, .gats: return .retrieval
        case .set, .add, .replace, .append, .prepend, .cas: return .storage
        case .delete: return .deletion
        case .touch: return .touch
        case .incr, .decr: return .arithmetic
        case .flushAll, .verbosity: return .ok
        case .version: return .version
        case .stats: return .stats
        case .metaGet, .metaSet, .metaDelete, .metaArithmetic: return quiet ? .quietMeta : .meta
        case .metaDebug: return .metaDebug
        case .metaNoop: return .quietMeta
        case .quit, .shutdown, .cacheMemlimit, .slabs, .lru, .lruCrawler, .watch, .misbehave, .refreshCerts:
            preconditionFailure("\(command) is never forwarded")
        }
    }
}
