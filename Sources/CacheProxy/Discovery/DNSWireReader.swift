/// Reads a DNS message field by field. The bytes come from the network and are
/// treated as hostile: every read is checked against the end of the message,
/// a compressed name may only point back to bytes before every part of it read
/// so far (so no chain of pointers can loop), and nothing is allocated from a
/// length or count the message states without the bytes being there.
struct DNSWireReader {
    let bytes: [UInt8]
    private(set) var offset: Int

    init(_ bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    var remaining: Int { bytes.count - offset }

    mutating func u8() throws(DNSMessageError) -> UInt8 {
        guard remaining >= 1 else { throw .truncated }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func u16() throws(DNSMessageError) -> UInt16 {
        guard remaining >= 2 else { throw .truncated }
        defer { offset += 2 }
        return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    mutating func u32() throws(DNSMessageError) -> UInt32 {
        guard remaining >= 4 else { throw .truncated }
        defer { offset += 4 }
        return UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16 | UInt32(bytes[offset + 2]) << 8 | UInt32(bytes[offset + 3])
    }

    mutating func take(_ count: Int) throws(DNSMessageError) -> ArraySlice<UInt8> {
        guard count >= 0, remaining >= count else { throw .truncated }
        defer { offset += count }
        return bytes[offset..<(offset + count)]
    }

    mutating func skip(_ count: Int) throws(DNSMessageError) {
        _ = try take(count)
    }

    /// A possibly compressed name, decompressed. The reader moves past the
    /// name's bytes at this place (up to and including its first pointer).
    mutating func name() throws(DNSMessageError) -> DNSName {
        var wire: [UInt8] = []
        try walkName { label in wire.append(contentsOf: label) }
        return DNSName(checkedWire: wire)
    }

    /// Checks a name and moves past it without keeping it (for records the
    /// proxy does not use).
    mutating func skipName() throws(DNSMessageError) {
        try walkName { _ in }
    }

    /// Calls `label` with each label's wire bytes (length byte first), then
    /// with the root's single 0.
    private mutating func walkName(_ label: (ArraySlice<UInt8>) -> Void) throws(DNSMessageError) {
        var position = offset
        // Where reading goes on after the name: set at the first pointer.
        var resume: Int?
        // The lowest offset any part of this name was read from: a pointer
        // must go below it, so every jump lands further back and none repeats.
        var lowest = offset
        var wireLength = 0
        while true {
            guard position < bytes.count else { throw .truncated }
            let length = Int(bytes[position])
            switch length & 0xC0 {
            case 0x00:
                wireLength += 1 + length
                guard wireLength <= DNSName.wireLimit else { throw .malformed("a name longer than 255 bytes") }
                guard position + 1 + length <= bytes.count else { throw .truncated }
                label(bytes[position..<(position + 1 + length)])
                position += 1 + length
                if length == 0 {
                    offset = resume ?? position
                    return
                }
            case 0xC0:
                guard position + 2 <= bytes.count else { throw .truncated }
                let target = (length & 0x3F) << 8 | Int(bytes[position + 1])
                guard target < lowest else { throw .malformed("a compression pointer that does not point back") }
                if resume == nil { resume = position + 2 }
                lowest = target
                position = target
            default:
                // 0x40 and 0x80: extended label types (RFC 6891 retired them).
                throw .malformed("an unknown label type")
            }
        }
    }
}

/// Why a DNS message could not be read.
enum DNSMessageError: Error, Equatable, CustomStringConvertible {
    /// The message ends inside a field.
    case truncated
    /// A field holds what it cannot.
    case malformed(String)

    var description: String {
        switch self {
        case .truncated: return "the message ends inside a field"
        case .malformed(let reason): return "malformed: \(reason)"
        }
    }
}
