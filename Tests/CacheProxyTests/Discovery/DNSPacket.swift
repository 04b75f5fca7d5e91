@testable import CacheProxy

/// Builds DNS messages byte by byte for the tests, malformed ones included:
/// nothing here checks what it writes.
struct DNSPacket {
    var bytes: [UInt8] = []

    var offset: Int { bytes.count }

    mutating func u8(_ value: UInt8) { bytes.append(value) }
    mutating func u16(_ value: UInt16) { bytes += [UInt8(value >> 8), UInt8(value & 0xFF)] }
    mutating func u32(_ value: UInt32) { u16(UInt16(value >> 16)); u16(UInt16(value & 0xFFFF)) }

    /// Labels of `text`, then (when `pointer` is given) a pointer instead of the root.
    mutating func name(_ text: String, pointer: Int? = nil) {
        for label in text.split(separator: ".") {
            u8(UInt8(label.utf8.count))
            bytes += Array(label.utf8)
        }
        if let pointer { self.pointer(pointer) } else { u8(0) }
    }

    mutating func pointer(_ target: Int) { u16(0xC000 | UInt16(target)) }

    /// A response header: QR, RD, RA set; `flags` added (TC 0x0200, an rcode).
    mutating func header(id: UInt16 = 0x1234, flags: UInt16 = 0, questions: UInt16 = 1, answers: UInt16 = 0,
                         authorities: UInt16 = 0, additionals: UInt16 = 0) {
        u16(id); u16(0x8180 | flags); u16(questions); u16(answers); u16(authorities); u16(additionals)
    }

    /// The question, right after the header (at offset 12).
    mutating func question(_ name: String, type: UInt16 = 1) {
        self.name(name)
        u16(type); u16(1)
    }

    /// A record's fixed fields after its name; `data` is the record data and
    /// `length` what the record claims (its true size by default).
    mutating func record(type: UInt16, recordClass: UInt16 = 1, ttl: UInt32 = 30, length: Int? = nil, data: [UInt8]) {
        u16(type); u16(recordClass); u32(ttl)
        u16(UInt16(length ?? data.count))
        bytes += data
    }

    /// An A record owned by the question's name (a pointer to offset 12).
    mutating func a(_ address: [UInt8], owner: Int = 12) {
        pointer(owner)
        record(type: 1, data: address)
    }

    static func response(_ name: String = "mc.test", type: UInt16 = 1, id: UInt16 = 0x1234, flags: UInt16 = 0,
                         answers: UInt16, additionals: UInt16 = 0, _ body: (inout DNSPacket) -> Void) -> [UInt8] {
        var packet = DNSPacket()
        packet.header(id: id, flags: flags, answers: answers, additionals: additionals)
        packet.question(name, type: type)
        body(&packet)
        return packet.bytes
    }
}

extension DNSName {
    static func of(_ text: String) -> DNSName { DNSName(parsing: text)! }
}

extension IPAddress {
    static func of(_ text: String) -> IPAddress { IPAddress(numeric: text)! }
}
