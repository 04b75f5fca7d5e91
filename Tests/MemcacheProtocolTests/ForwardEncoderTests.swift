import Buffers
import Testing
@testable import MemcacheProtocol

/// The fields a node must see exactly as the proxy parsed them: everything but
/// where things sit in the buffer, the line's raw extent, the spacing between
/// flags and (never forwarded) classic `noreply`.
private func essence(_ summary: Summary) -> Summary {
    var summary = summary
    summary.length = nil
    summary.arguments = ""
    summary.noreply = false
    // The same flag tokens, single-spaced.
    summary.meta.tokens = summary.meta.tokens.split(separator: " ").joined(separator: " ")
    return summary
}

private func forwardable(_ command: Command) -> Bool {
    switch command {
    case .get, .gets, .gat, .gats, .set, .add, .replace, .append, .prepend, .cas, .delete, .incr, .decr, .touch,
         .flushAll, .metaGet, .metaSet, .metaDelete, .metaArithmetic, .metaNoop:
        return true
    default:
        return false
    }
}

/// Parses `input`, forwards the request, and parses the forwarded bytes: the
/// two requests must be the same. Returns nil when `input` is not one
/// forwardable request.
private func roundTrip(_ input: [UInt8], limits: RequestLimits = RequestLimits()) -> (Summary, Summary, [UInt8])? {
    let parser = RequestParser(limits: limits)
    return input.withUnsafeBytes { raw -> (Summary, Summary, [UInt8])? in
        guard case .request(let request) = parser.parse(raw), forwardable(request.command) else { return nil }
        // A multi-key get is split per node by the proxy; one key goes as is.
        if request.command.isMultiKeyRetrieval && KeyTokens(raw, request.keys).dropFirst().first(where: { _ in true }) != nil {
            return nil
        }
        if request.command.isMultiKeyRetrieval && request.key.isEmpty { return nil }
        let original = summarize(request, in: raw)
        var buffer = ByteBuffer(capacity: 64)
        let layout = RequestEncoder.appendForwarded(request, in: raw, to: &buffer)
        let forwarded = buffer.withReadableBytes { Array($0) }
        let reparsed = forwarded.withUnsafeBytes { bytes -> Summary? in
            guard case .request(let again) = parser.parse(bytes), again.length == bytes.count else { return nil }
            #expect(Array(UnsafeRawBufferPointer(rebasing: bytes[layout.key])) == Array(UnsafeRawBufferPointer(rebasing: raw[request.key])))
            if request.command.carriesData {
                #expect(Array(UnsafeRawBufferPointer(rebasing: bytes[layout.data])) == Array(UnsafeRawBufferPointer(rebasing: raw[request.data])))
            }
            return summarize(again, in: bytes)
        }
        guard let reparsed else { return (original, Summary(command: .quit), forwarded) }
        return (original, reparsed, forwarded)
    }
}

@Suite("Forwarded requests")
struct ForwardEncoderTests {
    @Test("every forwardable request of the parser's tables parses back the same from what is forwarded",
          arguments: allRequestCases)
    func tablesRoundTrip(_ row: RequestCase) {
        guard let (original, reparsed, forwarded) = roundTrip(row.input, limits: row.limits) else { return }
        #expect(essence(reparsed) == essence(original), "forwarded as \(show(forwarded))")
    }

    @Test("what follows a NUL byte, and noreply, never reach the node",
          arguments: [
            ("set foo 0 0 3 noreply \\x00\r\nbar\r\n", "set foo 0 0 3\r\nbar\r\n"),
            ("set foo 0 0 3 \\x00noreply\r\nbar\r\n", "set foo 0 0 3\r\nbar\r\n"),
            ("get a\\x00 b c\r\n", "get a\r\n"),
            ("delete k noreply\r\n", "delete k\r\n"),
            ("delete k 0 noreply\r\n", "delete k\r\n"),
            ("incr k 007 noreply\r\n", "incr k 7\r\n"),
            ("touch k +10\r\n", "touch k 10\r\n"),
            ("set k 4294967296 -1 1 noreply\r\nx\r\n", "set k 0 -1 1\r\nx\r\n"),
            ("cas k 1 2 1 0042\r\nx\r\n", "cas k 1 2 1 42\r\nx\r\n"),
            ("gat 0010 k\r\n", "gat 10 k\r\n"),
            ("flush_all\r\n", "flush_all\r\n"),
            ("flush_all noreply\r\n", "flush_all\r\n"),
            ("flush_all 0 noreply\r\n", "flush_all 0\r\n"),
            ("mg k v\\x00 q\r\n", "mg k v\r\n"),
            ("mg k  v   f  q O1\r\n", "mg k v f q O1\r\n"),
            ("ms k 2 T0 q\\x00 F5\r\nhi\r\n", "ms k 2 T0 q\r\nhi\r\n"),
            ("ms Zm9v 2 b\r\nhi\r\n", "ms Zm9v 2 b\r\nhi\r\n"),
            ("md k\rx q\r\n", "md k\rx q\r\n"),
            ("ma k N0 J5 q\r\n", "ma k N0 J5 q\r\n"),
            ("mn\r\n", "mn\r\n"),
          ])
    func canonicalForm(_ input: String, _ expected: String) {
        let bytes = b(input)
        bytes.withUnsafeBytes { raw in
            guard case .request(let request) = RequestParser().parse(raw) else {
                Issue.record("\(input) does not parse")
                return
            }
            var buffer = ByteBuffer(capacity: 16)
            RequestEncoder.appendForwarded(request, in: raw, to: &buffer)
            #expect(show(buffer.withReadableBytes { Array($0) }) == show(b(expected)))
        }
    }

    @Test("requests built from random bytes parse back the same after forwarding")
    func randomRoundTrip() {
        var random = SplitMix64(state: 0xF0_4A_4D)
        let words = ["get", "gets", "gat", "gats", "set", "add", "cas", "append", "delete", "incr", "decr", "touch",
                     "flush_all", "mg", "ms", "md", "ma", "noreply", "q", "v", "k", "O7", "T10", "F3", "N0", "J5",
                     "C1", "MS", "ME", "b", "Zm9v", "0", "1", "2", "-1", "4294967296", "key", "k\r", "\u{0}", "\r"]
        var checked = 0
        for _ in 0..<20_000 {
            var line: [UInt8] = []
            for index in 0..<(1 + Int(random.next() % 8)) {
                if index > 0 { line.append(contentsOf: Array(repeating: 0x20, count: 1 + Int(random.next() % 2))) }
                line.append(contentsOf: Array(words[Int(random.next() % UInt64(words.count))].utf8))
            }
            line.append(contentsOf: [0x0D, 0x0A])
            line.append(contentsOf: Array("ab\r\n".utf8))
            guard let (original, reparsed, forwarded) = roundTrip(line) else { continue }
            checked += 1
            #expect(essence(reparsed) == essence(original), "\(show(line)) forwarded as \(show(forwarded))")
        }
        #expect(checked > 500)
    }
}
