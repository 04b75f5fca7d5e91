import Testing
@testable import LoadGenerator

@Suite struct ValuePatternTests {
    @Test func fixedSizeValuesHaveThatSize() throws {
        let values = ValuePattern(sizes: try ValueSizeRange(minimum: 100, maximum: 100))
        for index: UInt64 in [0, 1, 12345] { #expect(values.value(forKey: index).count == 100) }
    }

    @Test func rangedSizesStayInRangeAndSpreadOverIt() throws {
        let values = ValuePattern(sizes: try ValueSizeRange(minimum: 10, maximum: 20))
        var seen = Set<Int>()
        for index: UInt64 in 0..<1000 {
            let length = values.value(forKey: index).count
            #expect((10...20).contains(length))
            #expect(values.length(forKey: index) == length)
            seen.insert(length)
        }
        #expect(seen.count == 11)
    }

    @Test func valuesDependOnTheKeyOnlyAndArePrintable() throws {
        let a = ValuePattern(sizes: try ValueSizeRange(minimum: 64, maximum: 64))
        let b = ValuePattern(sizes: try ValueSizeRange(minimum: 64, maximum: 64))
        #expect(Array(a.value(forKey: 5)) == Array(b.value(forKey: 5)))
        #expect(Array(a.value(forKey: 5)) != Array(a.value(forKey: 6)))
        #expect(a.value(forKey: 5).allSatisfy { $0 > 0x20 && $0 < 0x7F })
    }

    @Test func matchesOnlyTheKeysOwnValue() throws {
        let values = ValuePattern(sizes: try ValueSizeRange(minimum: 50, maximum: 60))
        let own = Array(values.value(forKey: 42))
        #expect(own.withUnsafeBytes { values.matches($0, key: 42) })
        #expect(!own.withUnsafeBytes { values.matches($0, key: 43) })
        #expect(!own.dropLast().withUnsafeBytes { values.matches(UnsafeRawBufferPointer($0), key: 42) })
    }

    @Test func zeroLengthValuesAreAllowed() throws {
        let values = ValuePattern(sizes: try ValueSizeRange(minimum: 0, maximum: 0))
        #expect(values.value(forKey: 1).count == 0)
        #expect([UInt8]().withUnsafeBytes { values.matches($0, key: 1) })
    }
}
