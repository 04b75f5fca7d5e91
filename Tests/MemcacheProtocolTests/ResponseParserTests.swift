import Testing
@testable import MemcacheProtocol

/// A response's fields as plain values.
struct ResponseSummary: Equatable, Sendable, CustomStringConvertible {
    var kind: ResponseKind
    var length: Int? = nil
    var key = ""
    var flags: UInt32 = 0
    var cas: UInt64? = nil
    var data = ""
    var number: UInt64 = 0
    var text: String? = nil     // nil in an expectation: the whole line (kinds without text: empty)
    var metaFlags = ""

    var description: String {
        "\(kind) length=\(length.map(String.init) ?? "-") key=\(key) flags=\(flags) cas=\(cas.map(String.init) ?? "-") data=\(data) number=\(number) text=\(text ?? "-") meta=\(metaFlags)"
    }
}

enum ResponseResult: Equatable, Sendable, CustomStringConvertible {
    case response(ResponseSummary)
    case needMoreData(Int?)
    case malformed

    var description: String {
        switch self {
        case .response(let summary): return "response(\(summary))"
        case .needMoreData(let total): return "needMoreData(\(total.map(String.init) ?? "nil"))"
        case .malformed: return "malformed"
        }
    }
}

func responseResult(_ bytes: [UInt8], _ parser: ResponseParser = ResponseParser()) -> ResponseResult {
    bytes.withUnsafeBytes { raw in
        switch parser.parse(raw) {
        case .needMoreData(let total): return .needMoreData(total)
        case .malformed: return .malformed
        case .response(let response):
            return .response(ResponseSummary(
                kind: response.kind, length: response.length, key: string(raw, response.key), flags: response.flags,
                cas: response.casUnique, data: string(raw, response.data), number: response.number,
                text: string(raw, response.text), metaFlags: string(raw, response.metaFlags)))
        }
    }
}

struct ResponseCase: Sendable, CustomTestStringConvertible {
    let input: [UInt8]
    let expected: ResponseResult
    let decidedAt: Int

    /// `text` nil: the whole line for `.other`, empty for kinds that carry none.
    init(_ text: String, _ kind: ResponseKind, key: String = "", flags: UInt32 = 0, cas: UInt64? = nil, data: String = "",
         number: UInt64 = 0, text body: String? = nil, metaFlags: String = "") {
        input = b(text)
        let lineEnd = input.firstIndex(of: 0x0A)!
        let lineText = show(input[0..<(lineEnd > 0 && input[lineEnd - 1] == 0x0D ? lineEnd - 1 : lineEnd)])
        expected = .response(ResponseSummary(kind: kind, length: input.count, key: key, flags: flags, cas: cas, data: data,
                                             number: number, text: body ?? (kind == .other ? lineText : ""),
                                             metaFlags: metaFlags))
        decidedAt = input.count
    }

    init(malformed text: String, decidedAt: Int? = nil) {
        input = b(text)
        expected = .malformed
        self.decidedAt = decidedAt ?? input.count
    }

    var testDescription: String { show(input) }
}

// Reply lines copied from what memcached 1.6.18 sent (see the report for the session).
let responseCases: [ResponseCase] = [
    ResponseCase("VALUE rk 5 3 1078\r\nabc\r\n", .value, key: "rk", flags: 5, cas: 1078, data: "abc"),
    ResponseCase("VALUE k 0 1\r\nx\r\n", .value, key: "k", data: "x"),
    ResponseCase("VALUE k 4294967295 4\r\na\r\nb\r\n", .value, key: "k", flags: 4294967295, data: "a\\r\\nb"),
    ResponseCase("VALUE k 0 0\r\n\r\n", .value, key: "k"),
    ResponseCase("END\r\n", .end),
    ResponseCase("STORED\r\n", .stored),
    ResponseCase("NOT_STORED\r\n", .notStored),
    ResponseCase("EXISTS\r\n", .exists),
    ResponseCase("NOT_FOUND\r\n", .notFound),
    ResponseCase("DELETED\r\n", .deleted),
    ResponseCase("TOUCHED\r\n", .touched),
    ResponseCase("OK\r\n", .ok),
    ResponseCase("RESET\r\n", .reset),
    ResponseCase("15\r\n", .number, number: 15),
    ResponseCase("0\r\n", .number, number: 0),
    ResponseCase("18446744073709551615\r\n", .number, number: 18446744073709551615),
    ResponseCase("18446744073709551616\r\n", .other),
    ResponseCase("VERSION 1.6.18\r\n", .version, text: "1.6.18"),
    ResponseCase("STAT pid 7209\r\n", .stat, key: "pid", text: "7209"),
    ResponseCase("STAT inter 127.0.0.1\r\n", .stat, key: "inter", text: "127.0.0.1"),
    ResponseCase("STAT sizes_status disabled\r\n", .stat, key: "sizes_status", text: "disabled"),
    ResponseCase("ERROR\r\n", .error),
    ResponseCase("ERROR: shutdown not enabled\r\n", .error, text: "shutdown not enabled"),
    ResponseCase("ERROR Too many open connections\r\n", .error, text: "Too many open connections"),
    ResponseCase("ERRORS\r\n", .other),
    ResponseCase("CLIENT_ERROR bad command line format\r\n", .clientError, text: "bad command line format"),
    ResponseCase("CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n", .clientError,
                 text: "bad command line format.  Usage: delete <key> [noreply]"),
    ResponseCase("SERVER_ERROR object too large for cache\r\n", .serverError, text: "object too large for cache"),
    ResponseCase("VA 3 f5 t-1 c1078 s3 krk Oxy\r\nabc\r\n", .metaValue, data: "abc", metaFlags: "f5 t-1 c1078 s3 krk Oxy"),
    ResponseCase("VA 1\r\n0\r\n", .metaValue, data: "0"),
    ResponseCase("VA 0 W\r\n\r\n", .metaValue, metaFlags: "W"),
    ResponseCase("HD\r\n", .metaHit),
    ResponseCase("HD c1079\r\n", .metaHit, metaFlags: "c1079"),
    ResponseCase("EN Oq knokey\r\n", .metaMiss, metaFlags: "Oq knokey"),
    ResponseCase("EN\r\n", .metaMiss),
    ResponseCase("NS\r\n", .metaNotStored),
    ResponseCase("NF kk O1\r\n", .metaNotFound, metaFlags: "kk O1"),
    ResponseCase("EX\r\n", .metaExists),
    ResponseCase("MN\r\n", .metaNoop),
    ResponseCase("ME rk exp=-1 la=0 cas=1079 fetch=no cls=1 size=63\r\n", .metaDebug, key: "rk",
                 text: "exp=-1 la=0 cas=1079 fetch=no cls=1 size=63"),
    ResponseCase("key=n exp=-1 la=1795715992 cas=1083 fetch=no cls=1 size=61\n", .other),
    ResponseCase("MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n", .other),
    ResponseCase("Error TLS not enabled\r\n", .other),
    ResponseCase("ITEM k [1 b; 0 s]\r\n", .other),
    ResponseCase("\r\n", .other),
    ResponseCase(malformed: "VALUE k x 1\r\nx\r\n", decidedAt: 13),
    ResponseCase(malformed: "VALUE k 0\r\n"),
    ResponseCase(malformed: "VALUE k 0 1 2 3\r\n"),
    ResponseCase(malformed: "VALUE k 0 1 x\r\n"),
    ResponseCase(malformed: "VALUE k 4294967296 1\r\nx\r\n", decidedAt: 22),
    ResponseCase(malformed: "VALUE k 0 1\r\nxyz"),
    ResponseCase(malformed: "VA x\r\n"),
    ResponseCase(malformed: "VA 1\r\nxy\r\n", decidedAt: 9),
]

@Suite("Response parser")
struct ResponseParserTests {
    @Test("whole input", arguments: responseCases)
    func whole(_ row: ResponseCase) {
        #expect(responseResult(row.input) == row.expected)
    }

    @Test("every prefix", arguments: responseCases)
    func everyPrefix(_ row: ResponseCase) {
        for length in 0...row.input.count {
            let result = responseResult(Array(row.input[0..<length]))
            if length < row.decidedAt {
                guard case .needMoreData(let total) = result else {
                    Issue.record("prefix of \(length) gave \(result)")
                    return
                }
                if let total, row.expected != .malformed { #expect(total == row.input.count) }
            } else if result != row.expected {
                Issue.record("prefix of \(length) gave \(result), expected \(row.expected)")
                return
            }
        }
    }

    @Test("reply words are packed right", arguments: [
        ("VALUE", ReplyWord.value), ("END", ReplyWord.end), ("STORED", ReplyWord.stored), ("EXISTS", ReplyWord.exists),
        ("DELETED", ReplyWord.deleted), ("TOUCHED", ReplyWord.touched), ("OK", ReplyWord.ok), ("RESET", ReplyWord.reset),
        ("VERSION", ReplyWord.version), ("STAT", ReplyWord.stat), ("HD", ReplyWord.hd), ("VA", ReplyWord.va),
        ("EN", ReplyWord.en), ("NF", ReplyWord.nf), ("NS", ReplyWord.ns), ("EX", ReplyWord.ex), ("MN", ReplyWord.mn),
        ("ME", ReplyWord.me),
    ])
    func words(_ word: String, _ constant: UInt64) {
        let bytes = b(word)
        #expect(bytes.withUnsafeBytes { CommandName.pack($0.baseAddress!, 0, bytes.count) } == constant)
    }

    @Test("lines longer than the limit are malformed")
    func longLines() {
        let parser = ResponseParser(maxLineLength: 100)
        #expect(responseResult(b(rep("x", 100)), parser) == .needMoreData(nil))
        #expect(responseResult(b(rep("x", 101)), parser) == .malformed)
        #expect(responseResult(b(rep("x", 101) + "\r\n"), parser) == .malformed)
    }

    /// A stream memcached 1.6.18 really sent, fed in chunks of every size from 1 to 40.
    @Test("a recorded reply stream, in chunks")
    func recordedStream() {
        let stream = b("STORED\r\nVALUE rk 5 3 1078\r\nabc\r\nEND\r\nVA 3 f5 t-1 c1078 s3 krk Oxy\r\nabc\r\nHD\r\n" +
                       "EN Oq knokey\r\nHD c1079\r\nNS\r\nNF\r\nEX\r\nMN\r\nME rk exp=-1 la=0 cas=1079 fetch=no cls=1 size=63\r\n" +
                       "CLIENT_ERROR cannot increment or decrement non-numeric value\r\nSTORED\r\n15\r\nTOUCHED\r\n" +
                       "DELETED\r\nRESET\r\nOK\r\nVA 1\r\n0\r\nHD\r\nNF\r\n")
        let kinds: [ResponseKind] = [.stored, .value, .end, .metaValue, .metaHit, .metaMiss, .metaHit, .metaNotStored,
                                     .metaNotFound, .metaExists, .metaNoop, .metaDebug, .clientError, .stored, .number,
                                     .touched, .deleted, .reset, .ok, .metaValue, .metaHit, .metaNotFound]
        for size in 1...40 {
            var buffer: [UInt8] = []
            var seen: [ResponseKind] = []
            var offset = 0
            while offset < stream.count {
                buffer += stream[offset..<min(offset + size, stream.count)]
                offset += size
                while true {
                    let outcome = buffer.withUnsafeBytes { ResponseParser().parse($0) }
                    guard case .response(let response) = outcome else {
                        #expect(outcome.isNeedMoreData, "chunks of \(size): \(outcome)")
                        break
                    }
                    seen.append(response.kind)
                    buffer.removeFirst(response.length)
                }
            }
            #expect(seen == kinds, "chunks of \(size)")
            #expect(buffer.isEmpty)
        }
    }
}

extension ResponseOutcome {
    var isNeedMoreData: Bool {
        if case .needMoreData = self { return true }
        return false
    }
}
