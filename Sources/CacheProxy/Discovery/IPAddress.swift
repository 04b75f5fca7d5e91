import Glibc

/// An IPv4 or IPv6 address as DNS returns it (4 or 16 bytes), ordered so that
/// every proxy sorts one set of records alike: IPv4 first, then byte by byte.
struct IPAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// 4 or 16 bytes, network order.
    let bytes: [UInt8]

    init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// A numeric address (`10.0.0.1`, `fd00::1`); nil for anything else,
    /// names included: nothing here may block on a look-up.
    init?(numeric text: String) {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            bytes = withUnsafeBytes(of: &v4) { Array($0) }
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            bytes = withUnsafeBytes(of: &v6) { Array($0) }
            return
        }
        return nil
    }

    var isIPv4: Bool { bytes.count == 4 }

    /// The canonical text (inet_ntop): what the node's `host` becomes, so the
    /// same address always prints, hashes and compares the same.
    var description: String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = isIPv4 ? AF_INET : AF_INET6
        let ok = bytes.withUnsafeBytes { raw in inet_ntop(family, raw.baseAddress, &text, socklen_t(text.count)) != nil }
        guard ok else { return "?" }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func < (a: IPAddress, b: IPAddress) -> Bool {
        if a.bytes.count != b.bytes.count { return a.bytes.count < b.bytes.count }
        return a.bytes.lexicographicallyPrecedes(b.bytes)
    }
}
