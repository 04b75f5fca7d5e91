import Testing
@testable import MemcacheProtocol

/// A small deterministic generator (SplitMix64), so failures reproduce.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Pieces that make the parsers take their interesting paths.
let fuzzPieces: [[UInt8]] = [
    "get", "gets", "gat", "gats", "bget", "set", "add", "cas", "append", "delete", "incr", "decr", "touch",
    "flush_all", "verbosity", "cache_memlimit", "stats", "version", "quit", "lru", "mg", "ms", "md", "ma", "mn",
    "me", "VALUE", "VA", "HD", "EN", "END", "STAT", "ERROR", "CLIENT_ERROR", "HTTP/1.1", "noreply", "k", "key",
    "0", "1", "2", "-1", "+1", "4294967296", "18446744073709551616", "2147483646", "abc", "T30", "Tx", "N5",
    "R9", "C7", "F3", "Fx", "MA", "MX", "Mxx", "J1", "D1", "O" + String(repeating: "o", count: 33), "Oab", "b",
    "a2V5", "v", "q", "k", "c", "f", "s", "t", String(repeating: "x", count: 251),
].map { Array($0.utf8) } + [[0x20], [0x20], [0x20], [0x0D, 0x0A], [0x0A], [0x0D], [0x00], [0x09], [0x80], [0xFF]]

func fuzzInput(_ random: inout SplitMix64) -> [UInt8] {
    var input: [UInt8] = []
    let pieces = Int.random(in: 1...14, using: &random)
    for _ in 0..<pieces {
        if Int.random(in: 0..<10, using: &random) == 0 {
            input.append(UInt8.random(in: 0...255, using: &random))
        } else {
            input += fuzzPieces.randomElement(using: &random)!
        }
    }
    return input
}

@Suite("Fuzz")
struct FuzzTests {
    @Test("random requests: no crash, outcomes within the buffer, prefixes consistent")
    func requests() {
        var random = SplitMix64(state: 0x5EED_0001)
        let parser = RequestParser()
        for _ in 0..<4000 {
            let input = fuzzInput(&random)
            input.withUnsafeBytes { raw in
                let whole = parser.parse(raw)
                switch whole {
                case .request(let request):
                    #expect(request.length > 0 && request.length <= raw.count)
                    for range in [request.line, request.key, request.keys, request.data, request.arguments,
                                  request.meta.tokens, request.meta.opaque] {
                        #expect(range.lowerBound >= 0 && range.upperBound <= request.length, "\(show(input))")
                    }
                case .invalid(_, let consume, let swallow, _):
                    #expect(consume > 0 && consume <= raw.count && swallow >= 0, "\(show(input))")
                case .tooLarge(let request, let consume, let swallow):
                    #expect(consume > 0 && consume <= raw.count && swallow >= 2 && request.key.upperBound <= consume)
                case .needMoreData(let total):
                    if let total { #expect(total > raw.count) }
                case .close, .lineTooLong:
                    break
                }
            }
            // Every prefix parses without crashing; the whole input's outcome is reached
            // by the drip-fed connection as well.
            // (Except with a line over 2048 bytes: memcached, and the parser, close when
            // that much arrives without a newline, but not when it arrives whole.)
            if input.split(separator: 0x0A, omittingEmptySubsequences: false).allSatisfy({ $0.count < 2048 }) {
                let whole = ConnectionDriver.run(input, chunk: input.count + 1, parser)
                let dripped = ConnectionDriver.run(input, chunk: 1, parser)
                #expect(dripped.outcomes == whole.outcomes, "\(show(input))")
            }
        }
    }

    @Test("random replies: no crash, units within the buffer")
    func responses() {
        var random = SplitMix64(state: 0x5EED_0002)
        let parser = ResponseParser(maxLineLength: 512)
        for _ in 0..<4000 {
            let input = fuzzInput(&random)
            input.withUnsafeBytes { raw in
                for length in 0...raw.count {
                    let prefix = UnsafeRawBufferPointer(rebasing: raw[0..<length])
                    if case .response(let response) = parser.parse(prefix) {
                        #expect(response.length > 0 && response.length <= length)
                        for range in [response.line, response.key, response.data, response.text, response.metaFlags] {
                            #expect(range.lowerBound >= 0 && range.upperBound <= response.length, "\(show(input))")
                        }
                    }
                }
            }
        }
    }
}
