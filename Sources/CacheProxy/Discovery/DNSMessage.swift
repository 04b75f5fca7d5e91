/// The record types discovery asks for.
enum DNSRecordType: UInt16, Sendable, CustomStringConvertible {
    case a = 1
    case cname = 5
    case aaaa = 28
    case srv = 33

    var description: String {
        switch self {
        case .a: return "A"
        case .cname: return "CNAME"
        case .aaaa: return "AAAA"
        case .srv: return "SRV"
        }
    }
}

/// A query: one question, class IN, recursion desired, no EDNS (answers over
/// 512 bytes come back truncated and are asked again over TCP).
enum DNSQuery {
    static let classIN: UInt16 = 1

    static func encode(id: UInt16, name: DNSName, type: DNSRecordType) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(12 + name.wire.count + 4)
        func u16(_ value: UInt16) { bytes.append(UInt8(value >> 8)); bytes.append(UInt8(value & 0xFF)) }
        u16(id)
        u16(0x0100)   // QR 0 (query), opcode 0, RD 1
        u16(1)        // one question
        u16(0); u16(0); u16(0)
        bytes.append(contentsOf: name.wire)
        u16(type.rawValue)
        u16(classIN)
        return bytes
    }
}

/// A record of a type discovery uses, class IN.
struct DNSRecord: Equatable, Sendable {
    let name: DNSName
    let data: Data

    enum Data: Equatable, Sendable {
        /// 4 bytes.
        case a([UInt8])
        /// 16 bytes.
        case aaaa([UInt8])
        case cname(DNSName)
        case srv(priority: UInt16, weight: UInt16, port: UInt16, target: DNSName)
    }
}

/// A response to one query, read and checked in full (RFC 1035 §4.1).
struct DNSResponse: Equatable, Sendable {
    let id: UInt16
    /// TC: the server cut the answer to fit a datagram; ask again over TCP.
    /// A truncated response's records are not read (they may stop mid-record).
    let truncated: Bool
    let rcode: UInt8
    /// A, AAAA, CNAME and SRV records of class IN; others are checked and skipped.
    let answers: [DNSRecord]
    let additionals: [DNSRecord]

    static let noError: UInt8 = 0
    static let nameError: UInt8 = 3

    /// More records than this in one response (a 64 KiB message could hold
    /// about 4,000) is refused: no tier has that many nodes, and each kept
    /// record costs an allocation.
    static let recordLimit = 1024

    /// The message id, to find the query a datagram answers; nil when it is
    /// shorter than a header.
    static func id(of bytes: [UInt8]) -> UInt16? {
        bytes.count >= 12 ? UInt16(bytes[0]) << 8 | UInt16(bytes[1]) : nil
    }

    /// Reads `bytes` as the answer to `id` asking `name`/`type`. Throws when it
    /// is not a response to that question, or when any field is out of bounds.
    static func parse(_ bytes: [UInt8], id: UInt16, name: DNSName, type: DNSRecordType) throws(DNSMessageError) -> DNSResponse {
        var reader = DNSWireReader(bytes)
        guard try reader.u16() == id else { throw .malformed("another query's id") }
        let flags = try reader.u16()
        guard flags & 0x8000 != 0 else { throw .malformed("a query, not a response") }
        guard (flags >> 11) & 0xF == 0 else { throw .malformed("an opcode other than QUERY") }
        let questions = try reader.u16()
        let answerCount = Int(try reader.u16())
        let authorityCount = Int(try reader.u16())
        let additionalCount = Int(try reader.u16())
        // RFC 1035 allows one question per message; every server sends it back.
        guard questions == 1 else { throw .malformed("\(questions) questions, not 1") }
        let asked = try reader.name()
        let askedType = try reader.u16()
        let askedClass = try reader.u16()
        guard asked == name, askedType == type.rawValue, askedClass == DNSQuery.classIN else {
            throw .malformed("the answer to another question")
        }
        let truncated = flags & 0x0200 != 0
        let rcode = UInt8(flags & 0xF)
        if truncated {
            return DNSResponse(id: id, truncated: true, rcode: rcode, answers: [], additionals: [])
        }
        var kept = 0
        let answers = try records(answerCount, from: &reader, keep: true, kept: &kept)
        _ = try records(authorityCount, from: &reader, keep: false, kept: &kept)
        let additionals = try records(additionalCount, from: &reader, keep: true, kept: &kept)
        guard reader.remaining == 0 else { throw .malformed("\(reader.remaining) bytes after the last record") }
        return DNSResponse(id: id, truncated: false, rcode: rcode, answers: answers, additionals: additionals)
    }

    /// `count` resource records. The count comes from the header: records are
    /// read one by one until it is reached or the bytes run out (then
    /// `.truncated`), never reserved up front.
    private static func records(_ count: Int, from reader: inout DNSWireReader, keep: Bool,
                                kept: inout Int) throws(DNSMessageError) -> [DNSRecord] {
        var records: [DNSRecord] = []
        for _ in 0..<count {
            let start = reader.offset
            try reader.skipName()
            let type = try reader.u16()
            let recordClass = try reader.u16()
            _ = try reader.u32()   // TTL: the proxy asks again every refresh_s whatever it says
            let length = Int(try reader.u16())
            guard reader.remaining >= length else { throw .truncated }
            let end = reader.offset + length
            guard keep, recordClass == DNSQuery.classIN, let known = DNSRecordType(rawValue: type) else {
                try reader.skip(length)
                continue
            }
            kept += 1
            guard kept <= recordLimit else { throw .malformed("more than \(recordLimit) records") }
            var owner = DNSWireReader(reader.bytes, offset: start)
            let name = try owner.name()
            let data: DNSRecord.Data
            switch known {
            case .a:
                guard length == 4 else { throw .malformed("an A record of \(length) bytes") }
                data = .a(Array(try reader.take(4)))
            case .aaaa:
                guard length == 16 else { throw .malformed("an AAAA record of \(length) bytes") }
                data = .aaaa(Array(try reader.take(16)))
            case .cname:
                data = .cname(try reader.name())
            case .srv:
                let priority = try reader.u16()
                let weight = try reader.u16()
                let port = try reader.u16()
                data = .srv(priority: priority, weight: weight, port: port, target: try reader.name())
            }
            // A name in the data must end exactly where the record says it does.
            guard reader.offset == end else { throw .malformed("a \(known) record whose data is not \(length) bytes") }
            records.append(DNSRecord(name: name, data: data))
        }
        return records
    }
}
