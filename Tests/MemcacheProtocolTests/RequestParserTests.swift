import Testing
@testable import MemcacheProtocol

let allRequestCases: [RequestCase] =
    framingCases + storageCases + retrievalCases + otherClassicCases + metaGetCases + metaSetCases + metaOtherCases

@Suite("Request parser table")
struct RequestParserTableTests {
    @Test("the table is big enough")
    func tableSize() {
        #expect(allRequestCases.count >= 80)
    }

    @Test("whole input", arguments: allRequestCases)
    func wholeInput(_ row: RequestCase) {
        #expect(parse(row.input, RequestParser(limits: row.limits)) == row.expected)
        #expect(parseInto(row.input, RequestParser(limits: row.limits)) == row.expected, "parse(_:into:)")
    }

    /// Every strict prefix before the decision point needs more data; every longer
    /// prefix gives the same outcome (the parser never decides early or differently).
    @Test("every prefix", arguments: allRequestCases)
    func everyPrefix(_ row: RequestCase) {
        let parser = RequestParser(limits: row.limits)
        let decidedAt = row.decidedAt
        for length in 0...row.input.count {
            let result = parse(Array(row.input[0..<length]), parser)
            if length < decidedAt {
                guard case .needMoreData(let total) = result else {
                    Issue.record("prefix of \(length) bytes gave \(result), expected needMoreData")
                    return
                }
                if let total, case .request(let summary) = row.expected {
                    #expect(total == summary.length, "prefix of \(length) bytes announced \(total)")
                }
            } else if result != row.expected {
                Issue.record("prefix of \(length) bytes gave \(result), expected \(row.expected)")
                return
            }
        }
    }

    /// The whole input through a connection, split at every point and fed 1, 2, 3
    /// and 7 bytes at a time, gives the same sequence of outcomes as in one piece.
    @Test("split and dripped", arguments: allRequestCases)
    func splitAndDripped(_ row: RequestCase) {
        let parser = RequestParser(limits: row.limits)
        let whole = ConnectionDriver.run(row.input, chunk: row.input.count + 1, parser)
        #expect(whole.outcomes.first == row.expected)
        for size in [1, 2, 3, 7] {
            let dripped = ConnectionDriver.run(row.input, chunk: size, parser)
            #expect(dripped.outcomes == whole.outcomes, "fed \(size) bytes at a time")
        }
        for split in 0...row.input.count {
            let driver = ConnectionDriver.run(row.input, splitAt: split, parser)
            if driver.outcomes != whole.outcomes {
                Issue.record("split at \(split): \(driver.outcomes) instead of \(whole.outcomes)")
                return
            }
        }
    }
}

@Suite("Request parser: framing")
struct FramingTests {
    @Test("empty input needs more data")
    func empty() {
        #expect(parse([]) == .needMoreData(nil))
    }

    @Test("2048 bytes without a newline wait; 2049 close")
    func lineGuard() {
        #expect(parse(b(rep("x", 2048))) == .needMoreData(nil))
        #expect(parse(b(rep("x", 2049))) == .close)
        #expect(parse(b("set " + rep("k", 2045))) == .close)
        // A complete long line is processed, as memcached does when it arrives in one read.
        check(b("xx " + rep("k ", 1500) + "\r\n"), ERROR)
        check(b("gat 0 " + rep("k ", 1500) + "\r\n"), req(.gat, key: "k", keys: Array(repeating: "k", count: 1500)))
        let lines = "mn\r\n" + rep("x", 2049)
        var driver = ConnectionDriver()
        driver.receive(b(lines))
        #expect(driver.outcomes == [req(.metaNoop, length: 4), .close])
    }

    @Test("get and gets lines may grow without limit")
    func multiGetGrows() {
        let keys = (0..<3000).map { "key\($0)" }
        let line = b("get " + keys.joined(separator: " ") + "\r\n")
        #expect(line.count > Framing.readBufferSize)
        for prefix in [2049, 5000, 16385, line.count - 1] {
            #expect(parse(Array(line[0..<prefix])) == .needMoreData(nil))
        }
        check(line, req(.get, key: "key0", keys: keys))
        #expect(parse(b("gets " + rep("k ", 1500))) == .needMoreData(nil))
        #expect(parse(b(rep(" ", 100) + "get " + rep("k ", 1500))) == .needMoreData(nil))
        #expect(parse(b(rep(" ", 101) + "get " + rep("k ", 1500))) == .close)
        #expect(parse(b("get\t" + rep("k ", 1500))) == .close)
        #expect(parse(b("getsx" + rep("k ", 1500))) == .close)
        #expect(parse(b(rep(" ", 3000))) == .close)
    }

    @Test("lines longer than memcached's read buffer close, except get/gets")
    func readBufferLimit() {
        // Checked on the binary: 16384 bytes with "\r\n" answer ERROR, 16385 close.
        let atLimit = b("xx " + rep("k", 16384 - 5) + "\r\n")
        #expect(atLimit.count == 16384)
        #expect(parse(atLimit) == ERROR.resolved(atLimit))
        let over = b("xx " + rep("k", 16385 - 5) + "\r\n")
        #expect(parse(over) == .close)
        let gets = b("gets " + rep("k ", 9000) + "\r\n")
        check(gets, req(.gets, key: "k", keys: Array(repeating: "k", count: 9000)))
    }

    @Test("pipelined requests parse one after another")
    func pipeline() {
        let input = b("set a 0 0 1\r\n1\r\nget a b\r\nmn\r\nincr a 2 noreply\r\nms k 2 T5\r\nxy\r\nmg k v\r\n" +
                      "set k 0 0 3\r\nabcd\r\nbogus\r\ndelete a\r\n")
        let expected: [Outcome] = [
            req(.set, key: "a", data: "1", length: 16),
            req(.get, key: "a", keys: ["a", "b"], length: 9),
            req(.metaNoop, length: 4),
            req(.incr, key: "a", delta: 2, noreply: true, length: 18),
            meta(.metaSet, key: "k", letters: "T", tokens: "T5", ttl: 5, data: "xy", length: 15),
            meta(.metaGet, key: "k", letters: "v", tokens: "v", length: 8),
            err(.badDataChunk, consume: 18),   // 3 bytes + "\r\n" read "abcd\r": the "\n" is an empty line
            err(.error, consume: 1),
            err(.error, consume: 7),
            req(.delete, key: "a", length: 10),
        ]
        for size in [1, 4, 5, 11, input.count] {
            let driver = ConnectionDriver.run(input, chunk: size)
            #expect(driver.outcomes == expected, "chunks of \(size)")
            #expect(driver.isIdle)
        }
    }

    @Test("errors that swallow nothing let the data line parse as a command")
    func unswallowedData() {
        let driver = ConnectionDriver.run(b("set k abc 0 1 noreply\r\nx\r\nms k abc\r\nxx\r\nms k 2 MX\r\nxx\r\nmn\r\n"), chunk: 3)
        #expect(driver.outcomes == [
            err(.badCommandLineFormat, consume: 23, quiet: true), ERROR.withConsume(3),
            err(.badCommandLineFormat, consume: 10), ERROR.withConsume(4),
            err(.metaSetInvalidMode, consume: 11, swallow: 4),
            req(.metaNoop, length: 4),
        ])
    }

    @Test("quit and close stop the stream")
    func closeStops() {
        let driver = ConnectionDriver.run(b("mn\r\nGET / HTTP/1.1\r\nmn\r\n"), chunk: 1)
        #expect(driver.outcomes == [req(.metaNoop, length: 4), .close])
        // A 0x80 line is an unknown command to the parser; only a connection's
        // first byte means the binary protocol, and the node decides that.
        let binary = ConnectionDriver.run(b("\\x80\\x0a\\x00\\x00"), chunk: 1)
        #expect(binary.outcomes == [ERROR.withConsume(2)])
    }

    @Test("too large: decided on the line, data swallowed")
    func tooLargeValues() {
        // Boundaries measured on the binary (-I 1m; -C adds 8 bytes; non-zero flags cost 4).
        #expect(parse(b("set abc 0 0 1048514\r\n")) == .needMoreData(1048514 + 21 + 2))
        #expect(parse(b("set abc 0 0 1048515\r\n")) ==
            tooLarge(req(.set, key: "abc"), swallow: 1048517).resolved(b("set abc 0 0 1048515\r\n")))
        #expect(parse(b("set abc 1 0 1048510\r\n")) == .needMoreData(1048510 + 21 + 2))
        let flagged = b("set abc 1 0 1048511 noreply\r\n")
        #expect(parse(flagged) == tooLarge(req(.set, key: "abc", flags: 1, noreply: true), swallow: 1048513).resolved(flagged))
        let zeroFlags = b("set abc 4294967296 0 1048514\r\n")
        #expect(parse(zeroFlags) == .needMoreData(1048514 + zeroFlags.count + 2))
        let key250 = b("add \(k250) 0 0 1048267\r\n")
        #expect(parse(key250) == .needMoreData(1048267 + key250.count + 2))
        let key250Over = b("add \(k250) 0 0 1048268\r\n")
        #expect(parse(key250Over) == tooLarge(req(.add, key: k250), swallow: 1048270).resolved(key250Over))
        let noCas = RequestParser(limits: RequestLimits(casEnabled: false))
        #expect(parse(b("set abc 0 0 1048522\r\n"), noCas) == .needMoreData(1048522 + 21 + 2))
        let overNoCas = b("set abc 0 0 1048523\r\n")
        #expect(parse(overNoCas, noCas) == tooLarge(req(.set, key: "abc"), swallow: 1048525).resolved(overNoCas))
        let unlimited = RequestParser(limits: RequestLimits(itemSizeMax: nil))
        #expect(parse(b("set k 0 0 2147483645\r\n"), unlimited) == .needMoreData(2147483645 + 22 + 2))
        // ms: decoded key length, F flags; errors in the flags come first.
        let ms = b("ms YWJj 1048515 b q\r\n")
        #expect(parse(ms) == tooLarge(meta(.metaSet, key: "YWJj", letters: "bq", tokens: "b q", decodedKeyLength: 3),
                                      swallow: 1048517).resolved(ms))
        #expect(parse(b("ms YWJj 1048514 b\r\n")) == .needMoreData(1048514 + 19 + 2))
        let msFlags = b("ms abc 1048511 F1\r\n")
        #expect(parse(msFlags) == tooLarge(meta(.metaSet, key: "abc", letters: "F", tokens: "F1", clientFlags: 1),
                                           swallow: 1048513).resolved(msFlags))
        #expect(parse(b("ms k 2000000 \(o32)\r\n")) == err(.metaOpaqueTooLong, swallow: 2000002).resolved(b("ms k 2000000 \(o32)\r\n")))
        #expect(parse(b("ms k 2000000 MX\r\n")) == err(.metaSetInvalidMode, swallow: 2000002).resolved(b("ms k 2000000 MX\r\n")))
    }

    @Test("a too-large value is swallowed by the connection, then parsing goes on")
    func tooLargeSwallowed() {
        var input = b("set abc 0 0 1048515\r\n")
        input += Array(repeating: UInt8(ascii: "a"), count: 1048515) + b("\r\nmn\r\n")
        let driver = ConnectionDriver.run(input, chunk: 65536)
        #expect(driver.outcomes == [
            tooLarge(req(.set, key: "abc"), swallow: 1048517).resolved(b("set abc 0 0 1048515\r\n")),
            req(.metaNoop, length: 4),
        ])
        #expect(driver.isIdle)
    }

    @Test("a large value that fits is one request")
    func largeValue() {
        var input = b("set abc 0 0 1048514\r\n")
        input += Array(repeating: UInt8(ascii: "v"), count: 1048514) + b("\r\n")
        let result = input.withUnsafeBytes { RequestParser().parse($0) }
        guard case .request(let request) = result else { Issue.record("got \(result)"); return }
        #expect(request.length == input.count)
        #expect(request.data == 21..<(21 + 1048514))
    }
}

extension Outcome {
    func resolved(_ input: [UInt8]) -> Outcome { RequestCase.resolve(self, input) }
    func withConsume(_ consume: Int) -> Outcome {
        guard case .invalid(let error, _, let swallow, let quiet) = self else { return self }
        return .invalid(error, consume: consume, swallow: swallow, quiet: quiet)
    }
}
