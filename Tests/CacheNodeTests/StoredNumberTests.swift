@testable import CacheNode
import Testing

/// incr/decr read stored values as memcached 1.6.18's safe_strtoull does.
@Suite struct StoredNumberTests {
    @Test(arguments: [
        ("0", UInt64(0)), ("42", 42), ("  7", 7), ("99 ", 99), ("0010", 10), ("+5", 5),
        ("18446744073709551615", UInt64.max), ("12 abc", 12), ("-0", 0),
    ])
    func readsNumbers(text: String, value: UInt64) {
        let parsed = Array(text.utf8).withUnsafeBytes { StoredNumber.parse($0) }
        #expect(parsed == value)
    }

    @Test(arguments: ["", "abc", "12abc", "-1", "18446744073709551616", "1.5", "0x10",
                      // no digits: memcached 1.6.18 answers non-numeric (found by test_fuzz.py)
                      "   ", " ", "\r", "\t", "+", "-"])
    func refusesNonNumbers(text: String) {
        let parsed = Array(text.utf8).withUnsafeBytes { StoredNumber.parse($0) }
        #expect(parsed == nil)
    }
}
