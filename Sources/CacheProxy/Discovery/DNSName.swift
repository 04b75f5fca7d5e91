/// A domain name as DNS carries it, compared without regard to ASCII case
/// (RFC 4343): a server that answers `MemCache.Default...` for
/// `memcache.default...` names the same thing, and every proxy prints the same
/// spelling whatever case a server returns.
struct DNSName: Hashable, Sendable, CustomStringConvertible {
    /// The uncompressed wire form, lower-cased: each label after its length
    /// byte, then the root's 0. One allocation per name.
    let wire: [UInt8]

    /// RFC 1035's limits: a label of 1 to 63 bytes, a whole name of at most 255
    /// bytes on the wire (each label's length byte counted, and the root's).
    static let labelLimit = 63
    static let wireLimit = 255

    static let root = DNSName(checkedWire: [0])

    /// `wire` is already checked against the limits (`DNSWireReader.name`).
    init(checkedWire wire: [UInt8]) {
        // Length bytes are at most 63, below "A": lower-casing leaves them alone.
        self.wire = wire.map(DNSName.lowercased)
    }

    /// A name written as text: `memcache.default.svc.cluster.local`, with or
    /// without the final dot. Nil for an empty label, a label over 63 bytes,
    /// a name over the wire limit, or bytes other than printable ASCII without
    /// spaces and backslashes (what host and service names hold). The name is
    /// absolute: no search domain of resolv.conf is appended.
    init?(parsing text: String) {
        var body = Substring(text)
        if body.hasSuffix(".") { body = body.dropLast() }
        guard !body.isEmpty else { return nil }
        var wire: [UInt8] = []
        for label in body.split(separator: ".", omittingEmptySubsequences: false) {
            let bytes = Array(label.utf8)
            guard !bytes.isEmpty, bytes.count <= DNSName.labelLimit,
                  bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "\\") }) else { return nil }
            wire.append(UInt8(bytes.count))
            wire.append(contentsOf: bytes)
        }
        wire.append(0)
        guard wire.count <= DNSName.wireLimit else { return nil }
        self.init(checkedWire: wire)
    }

    /// The root: an SRV target of "." means "no service here" (RFC 2782).
    var isRoot: Bool { wire.count == 1 }

    /// Dotted text without the final dot. Bytes a host name cannot hold (a dot
    /// inside a label, a space, a control byte) are written `\DDD`, as dig
    /// prints them, so two different names never print alike.
    var description: String {
        if isRoot { return "." }
        var text = ""
        var index = 0
        while index < wire.count, wire[index] != 0 {
            let length = Int(wire[index])
            if !text.isEmpty { text += "." }
            for byte in wire[(index + 1)..<min(wire.count, index + 1 + length)] {
                let plain = (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                    || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                    || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
                if plain {
                    text.unicodeScalars.append(Unicode.Scalar(byte))
                } else {
                    let digits = String(byte)
                    text += "\\" + String(repeating: "0", count: 3 - digits.count) + digits
                }
            }
            index += 1 + length
        }
        return text
    }

    private static func lowercased(_ byte: UInt8) -> UInt8 {
        byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte + 32 : byte
    }
}
