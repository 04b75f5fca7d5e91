/// The classes `lru_crawler crawl <classes>` and `lru_crawler metadump
/// <classes>` name, read as memcached 1.6.18 reads them (`lru_crawler_crawl`
/// in crawler.c): `all`, `hash` (metadump only: a walk of the hash table
/// instead of the LRUs), or class ids separated by commas.
public enum CrawlerClasses: Equatable, Sendable {
    case all
    case hash
    /// Bit n set: class n (1...63). No bit set: a list with no id in it
    /// (`,`), which memcached answers `NOTSTARTED no items to crawl`.
    case listed(UInt64)

    /// Highest class id plus one (memcached's `MAX_NUMBER_OF_SLAB_CLASSES`).
    public static let classLimit = 64

    /// nil when an id is not a number in 1...63: `BADCLASS invalid class id`.
    /// Ids are read with `safe_strtoul` (`4294967297` is 1) and empty ones are
    /// skipped, as `strtok_r` skips them (`1,,2` is 1 and 2).
    public static func parse(_ text: String) -> CrawlerClasses? {
        if text == "all" { return .all }
        if text == "hash" { return .hash }
        var bits: UInt64 = 0
        for id in text.split(separator: ",") {
            guard let number = MemcachedNumber.uint32(String(id)), number >= 1, number < classLimit else { return nil }
            bits |= 1 << UInt64(number)
        }
        return .listed(bits)
    }

    /// Does an item of this class belong to the selection?
    public func contains(_ classID: Int) -> Bool {
        switch self {
        case .all, .hash: return true
        case .listed(let bits): return classID > 0 && classID < CrawlerClasses.classLimit && bits & (1 << UInt64(classID)) != 0
        }
    }

    /// A list that names no class.
    public var isEmpty: Bool { self == .listed(0) }
}
