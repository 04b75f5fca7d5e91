/// How a key's position on a twemproxy-style ring is computed (nutcracker's
/// `hash:`). The ring's points are MD5 whatever this says, as in nutcracker's
/// ketama distribution; only the key's hash changes. libmemcached's modes fix
/// their own (MD5 weighted, one-at-a-time plain).
public enum TwemproxyKeyHash: String, Sendable, Hashable, CaseIterable {
    case md5
    case oneAtATime = "one_at_a_time"
    case fnv1_64
    case fnv1a_64
    case fnv1_32
    case fnv1a_32
    case crc32
    case crc32a
    case murmur

    @inline(__always)
    func hash(_ key: UnsafeRawBufferPointer) -> UInt32 {
        switch self {
        case .md5: RingHash.md5(key)
        case .oneAtATime: RingHash.oneAtATime(key)
        case .fnv1_64: RingHash.fnv1_64(key)
        case .fnv1a_64: RingHash.fnv1a_64(key)
        case .fnv1_32: RingHash.fnv1_32(key)
        case .fnv1a_32: RingHash.fnv1a_32(key)
        case .crc32: RingHash.crc32(key)
        case .crc32a: RingHash.crc32a(key)
        case .murmur: RingHash.murmur(key)
        }
    }
}
