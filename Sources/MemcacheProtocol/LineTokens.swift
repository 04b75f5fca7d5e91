/// The first tokenizer pass of memcached's `tokenize_command` (MAX_TOKENS = 24):
/// up to 23 space-separated tokens of a command line; whatever follows the 23rd
/// token is left unscanned (memcached's terminal token then points at it, and only
/// the multi-get commands look at it). memcached's `ntokens` is `count + 1`.
///
/// Fixed capacity, on the stack, without allocation: the offsets live in memory from
/// `withStorage` (a `withUnsafeTemporaryAllocation` of 46 Ints, which Swift places
/// on the stack at this size; the allocation test would see it otherwise). An
/// `InlineArray` field was measured first: Swift copied 136 bytes of it for every
/// subscript read in a loop, and zeroed and moved all 368 bytes per line.
struct LineTokens {
    static var capacity: Int { 23 }

    /// Token start offsets (`count` of them are set).
    let starts: UnsafeMutablePointer<Int>
    /// Token end offsets.
    let ends: UnsafeMutablePointer<Int>
    /// Tokens found (at most 23).
    var count = 0
    /// Where scanning stopped: the end of the line, or the byte after the 23rd token.
    var scanEnd = 0

    /// Runs `body` with uninitialized room for the offsets of 23 tokens.
    @inline(__always)
    static func withStorage<R>(_ body: (UnsafeMutablePointer<Int>) -> R) -> R {
        withUnsafeTemporaryAllocation(of: Int.self, capacity: 2 * capacity) { buffer in
            // Safe because the allocation has 46 Ints and lives until `body` returns.
            body(buffer.baseAddress.unsafelyUnwrapped)
        }
    }

    /// Tokenizes `base[start..<end]` into `storage` (from `withStorage`).
    @inline(__always)
    init(_ storage: UnsafeMutablePointer<Int>, _ base: UnsafeRawPointer, from start: Int, to end: Int) {
        starts = storage
        ends = storage + LineTokens.capacity
        var index = start
        while count < LineTokens.capacity {
            while index < end && base.load(fromByteOffset: index, as: UInt8.self) == 0x20 { index += 1 }
            if index >= end { break }
            let tokenStart = index
            index = base.nextSpace(from: index, to: end)
            starts[count] = tokenStart
            ends[count] = index
            count += 1
        }
        scanEnd = index
    }

    /// memcached's `ntokens` (the real tokens plus its terminal token).
    var ntokens: Int { count + 1 }

    @inline(__always)
    func length(_ index: Int) -> Int { ends[index] - starts[index] }

    @inline(__always)
    func range(_ index: Int) -> Range<Int> { starts[index]..<ends[index] }
}

extension UnsafeRawPointer {
    @inline(__always)
    func byte(_ offset: Int) -> UInt8 { load(fromByteOffset: offset, as: UInt8.self) }

    /// The offset of the first space in `self[start..<end]`, or `end`. Looks at eight
    /// bytes at a time (a byte-wise loop with a branch per byte dominated the profile
    /// of multi-key gets): XOR with spaces turns a space into a zero byte, and
    /// `(x - 0x01…) & ~x & 0x80…` marks zero bytes; the lowest mark is exact.
    @inline(__always)
    func nextSpace(from start: Int, to end: Int) -> Int {
        var index = start
        while index + 8 <= end {
            // Safe because index + 8 <= end, and end is within the caller's buffer.
            let word = loadUnaligned(fromByteOffset: index, as: UInt64.self).littleEndian ^ 0x2020_2020_2020_2020
            let zeros = (word &- 0x0101_0101_0101_0101) & ~word & 0x8080_8080_8080_8080
            if zeros != 0 { return index + zeros.trailingZeroBitCount >> 3 }
            index += 8
        }
        while index < end && byte(index) != 0x20 { index += 1 }
        return index
    }

    /// True when the `count` bytes at `offset` are the bytes of `text`.
    @inline(__always)
    func matches(_ offset: Int, _ count: Int, _ text: StaticString) -> Bool {
        if count != text.utf8CodeUnitCount { return false }
        let other = UnsafeRawPointer(text.utf8Start)
        for index in 0..<count where byte(offset + index) != other.byte(index) { return false }
        return true
    }
}
