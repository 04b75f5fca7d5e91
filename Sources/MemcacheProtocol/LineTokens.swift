/// The first tokenizer pass of memcached's `tokenize_command` (MAX_TOKENS = 24):
/// up to 23 space-separated tokens of a command line; whatever follows the 23rd
/// token is left unscanned (memcached's terminal token then points at it, and only
/// the multi-get commands look at it). memcached's `ntokens` is `count + 1`.
///
/// Fixed capacity, on the stack: two `InlineArray`s of offsets, no allocation.
struct LineTokens {
    static var capacity: Int { 23 }

    var starts = InlineArray<23, Int>(repeating: 0)
    var ends = InlineArray<23, Int>(repeating: 0)
    /// Tokens found (at most 23).
    var count = 0
    /// Where scanning stopped: the end of the line, or the byte after the 23rd token.
    var scanEnd = 0

    init(_ base: UnsafeRawPointer, from start: Int, to end: Int) {
        var index = start
        while count < LineTokens.capacity {
            while index < end && base.load(fromByteOffset: index, as: UInt8.self) == 0x20 { index += 1 }
            if index >= end { break }
            let tokenStart = index
            while index < end && base.load(fromByteOffset: index, as: UInt8.self) != 0x20 { index += 1 }
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

    /// True when the `count` bytes at `offset` are the bytes of `text`.
    @inline(__always)
    func matches(_ offset: Int, _ count: Int, _ text: StaticString) -> Bool {
        if count != text.utf8CodeUnitCount { return false }
        let other = UnsafeRawPointer(text.utf8Start)
        for index in 0..<count where byte(offset + index) != other.byte(index) { return false }
        return true
    }
}
