@testable import CacheNode
import Testing

/// The `-Y` reader and file parser; the integration test compares both with
/// memcached itself (`Tests/integration/test_auth.py`).
@Suite struct AsciiLoginTests {
    /// Steps through `input` as the node does, collecting the outcomes.
    private func read(_ input: String, accepting good: String = "alice secret1") -> ([AsciiLogin.Outcome], consumed: Int) {
        var login = AsciiLogin()
        var outcomes: [AsciiLogin.Outcome] = []
        var total = 0
        let bytes = Array(input.utf8)
        bytes.withUnsafeBytes { all in
            while outcomes.count < 20 {
                var used = 0
                let outcome = login.step(UnsafeRawBufferPointer(rebasing: all[total...]), consumed: &used) { user, password in
                    String(decoding: user, as: UTF8.self) + " " + String(decoding: password, as: UTF8.self) == good
                }
                total += used
                outcomes.append(outcome)
                if outcome == .needMore || outcome == .close || outcome == .loggedIn { break }
            }
        }
        return (outcomes, total)
    }

    @Test func aGoodLoginIsReadAndTheRestLeft() {
        let (outcomes, consumed) = read("set x 0 0 13\r\nalice secret1\r\nget k\r\n")
        #expect(outcomes.first == .loggedIn)
        #expect(consumed == "set x 0 0 13\r\nalice secret1\r\n".utf8.count)
    }

    @Test func eachRefusalHasMemcachedsReason() {
        #expect(read("get k\r\n").0.first == .refused(.unauthenticated))
        #expect(read("set x 0 0 12\r\nalice secret\r\n").0.first == .refused(.authenticationFailure))
        #expect(read("set x 0 0 5\r\nalice\r\n").0.first == .refused(.badTokenFormat))
        #expect(read("set x 0 0 13\r\nalice secret1XY").0.first == .refused(.badTermination))
        #expect(read("set x 0 0 -3\r\n").0.first == .refused(.unauthenticated))
    }

    @Test func splitInputWaitsForTheRest() {
        #expect(read("\n").0 == [.needMore])
        #expect(read("set x 0 0 13\r\nalice sec").0 == [.needMore])
        #expect(read(String(repeating: "g", count: 2048)).0 == [.needMore])
        #expect(read(String(repeating: "g", count: 2049)).0 == [.close])
    }

    @Test func aBlockLargerThanMemcachedsBufferCloses() {
        #expect(read("set x 0 0 16382\r\n" + String(repeating: "a", count: 16384)).0.first == .refused(.badTermination))
        #expect(read("set x 0 0 16383\r\n" + String(repeating: "a", count: 16000)).0 == [.needMore])
        #expect(read("set x 0 0 16383\r\n" + String(repeating: "a", count: 16384)).0 == [.close])
    }

    @Test(arguments: [("13", 13), (" +13\r", 13), ("-0", 0), ("4294967295", 4_294_967_295)])
    func sizesMemcachedTakes(word: String, size: Int) {
        Array(word.utf8).withUnsafeBytes { #expect(AsciiLogin.size($0[...]) == size) }
    }

    @Test(arguments: ["", "-1", "13abc", "4294967296", "+", "x13"])
    func sizesMemcachedRefusesOrWraps(word: String) {
        Array(word.utf8).withUnsafeBytes { #expect(AsciiLogin.size($0[...]) == nil) }
    }
}

@Suite struct AuthFileTests {
    private func entries(_ file: String) -> [String]? {
        AuthFileEntry.parse(Array(file.utf8))?.map { String(decoding: $0.user + [58] + $0.password, as: UTF8.self) }
    }

    @Test func linesAreEntries() {
        #expect(entries("alice:secret1\nbob:hunter2\n") == ["alice:secret1", "bob:hunter2"])
        #expect(entries("bob:hunter2\r\nalice:secret1\r\n") == ["bob:hunter2", "alice:secret1"])
        #expect(entries("carol:with:colons and spaces\n") == ["carol:with:colons and spaces"])
        #expect(entries("") == [])
    }

    @Test func memcachedsQuirksAreKept() {
        // a lone last line without a newline loses its last byte
        #expect(entries("alice:secret1") == ["alice:secret"])
        #expect(entries("bob:hunter2\nalice:secret1") == ["bob:hunter2", "alice:secret1"])
        // an empty line, a line without a colon, a single CRLF line: malformed
        #expect(entries("bob:hunter2\n\nalice:secret1\n") == nil)
        #expect(entries("alice:secret1\nno-colon\n") == nil)
        #expect(entries("alice:secret1\r\n") == nil)
        // a line over 255 bytes: its first 255 count, nothing after it
        let long = entries("bob:" + String(repeating: "h", count: 300) + "\nalice:secret1\n")
        #expect(long == ["bob:" + String(repeating: "h", count: 251)])
        // eight entries at most
        let ten = (0..<10).map { "u\($0):p\($0)\n" }.joined()
        #expect(entries(ten)?.count == 8)
    }
}
