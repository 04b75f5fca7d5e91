import Testing
@testable import MemcacheProtocol

@Suite("Request line limit")
struct LineLimitTests {
    let limits = RequestLimits(maxLineLength: 4096)

    @Test("a multi-get line longer than the limit is refused, with or without its newline")
    func longMultiGet() {
        let keys = Array(repeating: "key", count: 1100).joined(separator: " ")   // 4399 bytes
        #expect(parse(b("get " + keys), RequestParser(limits: limits)) == .lineTooLong)
        #expect(parse(b("get " + keys + "\r\n"), RequestParser(limits: limits)) == .lineTooLong)
        #expect(parse(b("gets " + keys + "\r\n"), RequestParser(limits: limits)) == .lineTooLong)
    }

    @Test("a line at the limit parses, and memcached's own 2048-byte rule still closes other lines first")
    func atTheLimit() {
        let keys = Array(repeating: "k", count: 2044).joined(separator: " ")     // 4087 bytes
        guard case .request(let summary) = parse(b("get " + keys + "\r\n"), RequestParser(limits: limits)) else {
            Issue.record("a 4093-byte get line did not parse")
            return
        }
        #expect(summary.keys.count == 2044)
        #expect(parse(b("set " + String(repeating: "x", count: 5000)), RequestParser(limits: limits)) == .close)
    }

    @Test("the default limit is 2 MiB")
    func defaultLimit() {
        #expect(RequestLimits().maxLineLength == 2 << 20)
    }
}
