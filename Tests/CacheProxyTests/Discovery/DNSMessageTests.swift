@testable import CacheProxy
import Testing

@Suite struct DNSNameTests {
    @Test func readsTextCaseBlindWithOrWithoutTheFinalDot() {
        let name = DNSName.of("MemCache.Default.svc.")
        #expect(name == DNSName.of("memcache.default.svc"))
        #expect(name.wire == [8] + Array("memcache".utf8) + [7] + Array("default".utf8) + [3] + Array("svc".utf8) + [0])
        #expect(name.description == "memcache.default.svc")
        #expect(DNSName.of("_memcache._tcp.mc.test").description == "_memcache._tcp.mc.test")
    }

    @Test(arguments: ["", ".", "a..b", ".a", "a b", "a\\b", "é.test", String(repeating: "x", count: 64) + ".test",
                      Array(repeating: String(repeating: "x", count: 63), count: 4).joined(separator: ".")])
    func refusesWhatIsNotAName(text: String) {
        #expect(DNSName(parsing: text) == nil)
    }

    @Test func acceptsTheLongestNames() {
        let label = String(repeating: "x", count: 63)
        // 4 labels of 63, 61: 64 * 3 + 62 + 1 = 255 bytes on the wire.
        let longest = [label, label, label, String(repeating: "y", count: 61)].joined(separator: ".")
        #expect(DNSName(parsing: longest)?.wire.count == 255)
        #expect(DNSName(parsing: longest + "y") == nil)
    }

    @Test func printsOddBytesEscaped() {
        // A dot inside a label must not print like two labels.
        let odd = DNSName(checkedWire: [3, UInt8(ascii: "a"), UInt8(ascii: "."), 0x07, 1, UInt8(ascii: "B"), 0])
        #expect(odd.description == "a\\046\\007.b")
        #expect(DNSName.root.description == "." && DNSName.root.isRoot)
    }
}

@Suite struct DNSQueryTests {
    @Test func encodesOneQuestionWithRecursionDesired() {
        let bytes = DNSQuery.encode(id: 0xBEEF, name: .of("mc.test"), type: .srv)
        #expect(bytes == [0xBE, 0xEF, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,
                          2, UInt8(ascii: "m"), UInt8(ascii: "c"), 4] + Array("test".utf8) + [0, 0, 33, 0, 1])
    }

    @Test func aQueryReadsBackAsItsOwnQuestion() throws {
        // A server echoes the question: the query with QR set and no records is an empty answer.
        var bytes = DNSQuery.encode(id: 7, name: .of("mc.test"), type: .aaaa)
        bytes[2] |= 0x80
        let response = try DNSResponse.parse(bytes, id: 7, name: .of("MC.TEST"), type: .aaaa)
        #expect(response.answers.isEmpty && response.rcode == 0 && !response.truncated)
    }
}

@Suite struct DNSResponseTests {
    /// mc.test A 10.0.0.2, 10.0.0.1 (owners compressed to the question).
    static let twoAddresses = DNSPacket.response(answers: 2) { packet in
        packet.a([10, 0, 0, 2])
        packet.a([10, 0, 0, 1])
    }

    @Test func readsAddressesWithCompressedNames() throws {
        let response = try DNSResponse.parse(Self.twoAddresses, id: 0x1234, name: .of("mc.test"), type: .a)
        #expect(response.answers == [DNSRecord(name: .of("mc.test"), data: .a([10, 0, 0, 2])),
                                     DNSRecord(name: .of("mc.test"), data: .a([10, 0, 0, 1]))])
        let addresses = try DNSRecordIndex(response).addresses(of: .of("mc.test"), type: .a)
        #expect(addresses == [.of("10.0.0.2"), .of("10.0.0.1")])
        #expect(try DNSRecordIndex(response).addresses(of: .of("mc.test"), type: .aaaa).isEmpty)
    }

    @Test func followsACNAMEChainWithinTheAnswer() throws {
        // www.mc.test CNAME lb.mc.test; lb.mc.test CNAME pool.mc.test; pool.mc.test AAAA ::1
        var lb = 0
        var pool = 0
        let bytes = DNSPacket.response("www.mc.test", type: 28, answers: 3) { packet in
            packet.pointer(12)
            packet.record(type: 5, data: [])   // rdata patched below
            let rdataLength = packet.offset - 2
            lb = packet.offset
            packet.name("lb", pointer: 16)     // "mc.test" is at 12 + 4
            packet.bytes[rdataLength + 1] = UInt8(packet.offset - lb)
            packet.pointer(lb)
            packet.record(type: 5, data: [])
            let second = packet.offset - 2
            pool = packet.offset
            packet.name("pool", pointer: 16)
            packet.bytes[second + 1] = UInt8(packet.offset - pool)
            packet.pointer(pool)
            packet.record(type: 28, data: [UInt8](repeating: 0, count: 15) + [1])
        }
        let response = try DNSResponse.parse(bytes, id: 0x1234, name: .of("www.mc.test"), type: .aaaa)
        let index = DNSRecordIndex(response)
        #expect(try index.canonicalName(of: .of("www.mc.test")) == .of("pool.mc.test"))
        #expect(try index.addresses(of: .of("WWW.mc.test"), type: .aaaa) == [.of("::1")])
    }

    @Test func refusesCNAMELoopsAndForks() throws {
        func alias(_ from: String, _ to: String, _ packet: inout DNSPacket) {
            packet.name(from)
            var target = DNSPacket()
            target.name(to)
            packet.record(type: 5, data: target.bytes)
        }
        let loop = DNSPacket.response("a.test", answers: 2) { packet in
            alias("a.test", "b.test", &packet)
            alias("b.test", "a.test", &packet)
        }
        let looping = DNSRecordIndex(try DNSResponse.parse(loop, id: 0x1234, name: .of("a.test"), type: .a))
        #expect(throws: DNSAnswerError.aliasChainTooLong(.of("a.test"))) { try looping.addresses(of: .of("a.test"), type: .a) }
        let fork = DNSPacket.response("a.test", answers: 2) { packet in
            alias("a.test", "b.test", &packet)
            alias("a.test", "c.test", &packet)
        }
        let forking = DNSRecordIndex(try DNSResponse.parse(fork, id: 0x1234, name: .of("a.test"), type: .a))
        #expect(throws: DNSAnswerError.ambiguousAlias(.of("a.test"))) { try forking.canonicalName(of: .of("a.test")) }
    }

    @Test func readsSRVWithTargetsInTheAdditionalSection() throws {
        var targetA = 0
        let bytes = DNSPacket.response("_mc._tcp.mc.test", type: 33, answers: 2, additionals: 2) { packet in
            packet.pointer(12)
            var srv = DNSPacket()
            srv.u16(10); srv.u16(60); srv.u16(11211)
            targetA = packet.offset + 10 + 6
            srv.name("a", pointer: 12 + 9)   // a.mc.test: "mc.test" follows "_mc" and "_tcp"
            packet.record(type: 33, data: srv.bytes)
            packet.pointer(12)
            var second = DNSPacket()
            second.u16(10); second.u16(40); second.u16(11300); second.name("b.mc.test")
            packet.record(type: 33, data: second.bytes)
            packet.pointer(targetA)
            packet.record(type: 1, data: [10, 0, 0, 7])
            packet.name("b.mc.test")
            packet.record(type: 1, data: [10, 0, 0, 8])
        }
        let response = try DNSResponse.parse(bytes, id: 0x1234, name: .of("_mc._tcp.mc.test"), type: .srv)
        let index = DNSRecordIndex(response)
        let services = try index.services(of: .of("_mc._tcp.mc.test"))
        #expect(services == [.init(priority: 10, weight: 60, port: 11211, target: .of("a.mc.test")),
                             .init(priority: 10, weight: 40, port: 11300, target: .of("b.mc.test"))])
        #expect(try index.addresses(of: .of("a.mc.test"), type: .a) == [.of("10.0.0.7")])
        #expect(try index.addresses(of: .of("b.mc.test"), type: .a) == [.of("10.0.0.8")])
    }

    @Test func skipsRecordsOfOtherTypesAndClasses() throws {
        let bytes = DNSPacket.response(answers: 3, additionals: 1) { packet in
            packet.pointer(12)
            packet.record(type: 16, data: [3] + Array("txt".utf8))     // TXT
            packet.pointer(12)
            packet.record(type: 1, recordClass: 3, data: [1, 2, 3, 4])  // class CH
            packet.a([10, 0, 0, 1])
            packet.u8(0)                                                // EDNS OPT at the root
            packet.record(type: 41, recordClass: 1232, ttl: 0, data: [])
        }
        let response = try DNSResponse.parse(bytes, id: 0x1234, name: .of("mc.test"), type: .a)
        #expect(response.answers == [DNSRecord(name: .of("mc.test"), data: .a([10, 0, 0, 1]))])
        #expect(response.additionals.isEmpty)
    }

    @Test func readsTheRcodeAndTheTruncationBit() throws {
        var nameError = DNSPacket()
        nameError.header(flags: 3)
        nameError.question("mc.test")
        #expect(try DNSResponse.parse(nameError.bytes, id: 0x1234, name: .of("mc.test"), type: .a).rcode == 3)
        // Truncated: the records are not read, even cut in the middle of one.
        let cut = Array(DNSPacket.response(flags: 0x0200, answers: 2) { packet in
            packet.a([10, 0, 0, 2])
            packet.a([10, 0, 0, 1])
        }.dropLast(3))
        let truncated = try DNSResponse.parse(cut, id: 0x1234, name: .of("mc.test"), type: .a)
        #expect(truncated.truncated && truncated.answers.isEmpty)
    }

    @Test func refusesAnswersToAnotherQuestion() {
        let good = Self.twoAddresses
        #expect(throws: DNSMessageError.malformed("another query's id")) {
            try DNSResponse.parse(good, id: 0x1235, name: .of("mc.test"), type: .a)
        }
        #expect(throws: DNSMessageError.malformed("the answer to another question")) {
            try DNSResponse.parse(good, id: 0x1234, name: .of("mc.other"), type: .a)
        }
        #expect(throws: DNSMessageError.malformed("the answer to another question")) {
            try DNSResponse.parse(good, id: 0x1234, name: .of("mc.test"), type: .aaaa)
        }
        var query = good
        query[2] &= 0x7F
        #expect(throws: DNSMessageError.malformed("a query, not a response")) {
            try DNSResponse.parse(query, id: 0x1234, name: .of("mc.test"), type: .a)
        }
        var noQuestion = good
        noQuestion[5] = 0
        #expect(throws: DNSMessageError.malformed("0 questions, not 1")) {
            try DNSResponse.parse(noQuestion, id: 0x1234, name: .of("mc.test"), type: .a)
        }
        var opcode = good
        opcode[2] |= 0x10
        #expect(throws: DNSMessageError.malformed("an opcode other than QUERY")) {
            try DNSResponse.parse(opcode, id: 0x1234, name: .of("mc.test"), type: .a)
        }
    }

    @Test func everyCutOfAnAnswerIsRefused() {
        let good = Self.twoAddresses
        for length in 0..<good.count {
            #expect(throws: DNSMessageError.self, "cut at \(length)") {
                try DNSResponse.parse(Array(good.prefix(length)), id: 0x1234, name: .of("mc.test"), type: .a)
            }
        }
        #expect(DNSResponse.id(of: Array(good.prefix(11))) == nil)
        #expect(throws: DNSMessageError.malformed("1 bytes after the last record")) {
            try DNSResponse.parse(good + [0], id: 0x1234, name: .of("mc.test"), type: .a)
        }
    }

    @Test func refusesPointerLoops() {
        // The answer's owner: the label "x" then a pointer back to itself.
        let toItself = DNSPacket.response(answers: 1) { packet in
            let start = packet.offset
            packet.name("x", pointer: start)
            packet.record(type: 1, data: [1, 2, 3, 4])
        }
        // Two names pointing at each other: the first jump goes forward.
        let pingPong = DNSPacket.response(answers: 1) { packet in
            let start = packet.offset
            packet.pointer(start + 2)
            packet.pointer(start)
            packet.record(type: 1, data: [1, 2, 3, 4])
        }
        // A pointer to a pointer to itself: each jump must land lower than the last.
        let chain = DNSPacket.response(answers: 1) { packet in
            let start = packet.offset
            packet.pointer(start)
            packet.record(type: 1, data: [1, 2, 3, 4])
        }
        let outOfRange = DNSPacket.response(answers: 1) { packet in
            packet.pointer(0x3FFF)
            packet.record(type: 1, data: [1, 2, 3, 4])
        }
        for bytes in [toItself, pingPong, chain, outOfRange] {
            #expect(throws: DNSMessageError.malformed("a compression pointer that does not point back")) {
                try DNSResponse.parse(bytes, id: 0x1234, name: .of("mc.test"), type: .a)
            }
        }
        // A pointer into the header still has to decode as a name: 0x12 0x34 is a label running off the end.
        let intoHeader = DNSPacket.response(answers: 1) { packet in
            packet.pointer(0)
            packet.record(type: 1, data: [1, 2, 3, 4])
        }
        #expect(throws: DNSMessageError.self) { try DNSResponse.parse(intoHeader, id: 0x1234, name: .of("mc.test"), type: .a) }
    }

    @Test func refusesNamesOver255BytesBuiltFromPointers() {
        // Inside a TXT record (skipped unread): five 63-byte labels, each
        // followed by a pointer to the one before. An A record's owner points
        // at the last: 5 * 64 + 1 = 321 bytes decompressed.
        var last = 0
        let bytes = DNSPacket.response(answers: 2) { packet in
            packet.pointer(12)
            packet.record(type: 16, data: [])
            let lengthAt = packet.offset - 2
            let dataStart = packet.offset
            var previous: Int?
            for _ in 0..<5 {
                last = packet.offset
                packet.u8(63)
                packet.bytes += [UInt8](repeating: UInt8(ascii: "x"), count: 63)
                if let previous { packet.pointer(previous) } else { packet.u8(0) }
                previous = last
            }
            let length = packet.offset - dataStart
            packet.bytes[lengthAt] = UInt8(length >> 8)
            packet.bytes[lengthAt + 1] = UInt8(length & 0xFF)
            packet.pointer(last)
            packet.record(type: 1, data: [1, 2, 3, 4])
        }
        #expect(throws: DNSMessageError.malformed("a name longer than 255 bytes")) {
            try DNSResponse.parse(bytes, id: 0x1234, name: .of("mc.test"), type: .a)
        }
    }

    @Test func refusesUnknownLabelTypes() {
        for kind: UInt8 in [0x40, 0x80] {
            let bytes = DNSPacket.response(answers: 1) { packet in
                packet.u8(kind | 1); packet.u8(0); packet.u8(0)
                packet.record(type: 1, data: [1, 2, 3, 4])
            }
            #expect(throws: DNSMessageError.malformed("an unknown label type")) {
                try DNSResponse.parse(bytes, id: 0x1234, name: .of("mc.test"), type: .a)
            }
        }
    }

    @Test func refusesRecordsWhoseLengthsLie() {
        let longA = DNSPacket.response(answers: 1) { packet in
            packet.pointer(12)
            packet.record(type: 1, data: [1, 2, 3, 4, 5])
        }
        #expect(throws: DNSMessageError.malformed("an A record of 5 bytes")) {
            try DNSResponse.parse(longA, id: 0x1234, name: .of("mc.test"), type: .a)
        }
        let shortAAAA = DNSPacket.response(type: 28, answers: 1) { packet in
            packet.pointer(12)
            packet.record(type: 28, data: [1, 2, 3, 4])
        }
        #expect(throws: DNSMessageError.malformed("an AAAA record of 4 bytes")) {
            try DNSResponse.parse(shortAAAA, id: 0x1234, name: .of("mc.test"), type: .aaaa)
        }
        // The CNAME's name runs past its stated length (into the next record).
        let cname = DNSPacket.response(answers: 2) { packet in
            packet.pointer(12)
            var target = DNSPacket()
            target.name("lb.test")
            packet.record(type: 5, length: 3, data: target.bytes)
            packet.a([1, 2, 3, 4])
        }
        #expect(throws: DNSMessageError.self) { try DNSResponse.parse(cname, id: 0x1234, name: .of("mc.test"), type: .a) }
        // Longer than the message.
        let past = DNSPacket.response(answers: 1) { packet in
            packet.pointer(12)
            packet.record(type: 1, length: 400, data: [1, 2, 3, 4])
        }
        #expect(throws: DNSMessageError.truncated) { try DNSResponse.parse(past, id: 0x1234, name: .of("mc.test"), type: .a) }
        // SRV data too short for its fixed fields.
        let srv = DNSPacket.response("_s._tcp.test", type: 33, answers: 1) { packet in
            packet.pointer(12)
            packet.record(type: 33, data: [0, 1, 0])
        }
        #expect(throws: DNSMessageError.self) { try DNSResponse.parse(srv, id: 0x1234, name: .of("_s._tcp.test"), type: .srv) }
    }

    @Test func hugeCountsCostNothingUpFront() {
        // 65,535 answers announced, one present: refused at the end of the bytes.
        var bytes = Self.twoAddresses
        bytes[6] = 0xFF; bytes[7] = 0xFF
        bytes[8] = 0xFF; bytes[9] = 0xFF
        bytes[10] = 0xFF; bytes[11] = 0xFF
        #expect(throws: DNSMessageError.truncated) { try DNSResponse.parse(bytes, id: 0x1234, name: .of("mc.test"), type: .a) }
    }

    @Test func refusesMoreRecordsThanTheLimit() {
        let count = DNSResponse.recordLimit + 1
        let bytes = DNSPacket.response(answers: UInt16(count)) { packet in
            for index in 0..<count { packet.a([10, 0, UInt8(index >> 8), UInt8(index & 0xFF)]) }
        }
        #expect(throws: DNSMessageError.malformed("more than \(DNSResponse.recordLimit) records")) {
            try DNSResponse.parse(bytes, id: 0x1234, name: .of("mc.test"), type: .a)
        }
    }

    /// Random damage to good answers: every outcome is an answer or an error, never a crash.
    @Test func survivesDamagedAnswers() {
        var generator = SplitMix(seed: 0xD15C0)
        let samples = [Self.twoAddresses]
        for _ in 0..<20_000 {
            var bytes = samples[0]
            for _ in 0...Int(generator.next() % 4) {
                switch generator.next() % 4 {
                case 0: bytes[Int(generator.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: generator.next())
                case 1: bytes = Array(bytes.prefix(Int(generator.next() % UInt64(bytes.count + 1))))
                case 2: bytes.insert(UInt8(truncatingIfNeeded: generator.next()), at: Int(generator.next() % UInt64(bytes.count + 1)))
                default: bytes += (0..<Int(generator.next() % 16)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
                }
                if bytes.isEmpty { break }
            }
            if let response = try? DNSResponse.parse(bytes, id: 0x1234, name: .of("mc.test"), type: .a) {
                let index = DNSRecordIndex(response)
                _ = try? index.addresses(of: .of("mc.test"), type: .a)
                _ = try? index.services(of: .of("mc.test"))
            }
        }
        // Pure noise with a plausible header.
        for _ in 0..<20_000 {
            var bytes = (0..<Int(generator.next() % 600)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            if bytes.count >= 12 { bytes[0] = 0x12; bytes[1] = 0x34; bytes[2] |= 0x80; bytes[4] = 0; bytes[5] = 1 }
            _ = try? DNSResponse.parse(bytes, id: 0x1234, name: .of("mc.test"), type: .a)
        }
    }
}

/// A small seeded generator, so a failure repeats.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
