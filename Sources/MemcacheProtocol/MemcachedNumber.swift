/// Number parsing exactly as memcached 1.6.18 does it on LP64 Linux (`util.c`:
/// `safe_strtoul`, `safe_strtol`, `safe_strtoull`), over raw bytes.
///
/// The C functions wrap `strtoul`/`strtol`/`strtoull` (base 10): leading white
/// space (`\t \n \v \f \r` and space) is skipped, one `+` or `-` is allowed, at least
/// one digit is needed, and the digits must be followed by the end of the token or
/// by a white-space byte (anything after it is ignored: `5\tzz` is 5). A value out
/// of the 64-bit range is refused (ERANGE). Then the quirks, all observed on the
/// 1.6.18 binary:
/// - `uint32` (flags, verbosity, cache_memlimit) is a 64-bit `strtoul` truncated to
///   32 bits: `4294967296` is 0, `18446744073709551615` is 4294967295, and a
///   negative number is refused only when its 64-bit result looks negative
///   (`-1` refused, `-18446744073709551615` accepted as 1).
/// - `int32` (exptime, bytes, meta tokens) is a 64-bit `strtol` truncated to 32
///   bits: exptime `4294967296` is 0, bytes `4294967297` is 1.
/// - `uint64` (cas unique, delta) refuses negatives the same way as `uint32`.
///
/// A token never contains a space or a NUL (the tokenizer stops at both), so the
/// end of the range plays the part of C's terminating NUL.
public enum MemcachedNumber {
    /// `safe_strtoul`: 32-bit unsigned with memcached's LP64 truncation.
    @inlinable
    public static func uint32(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> UInt32? {
        guard let base = bytes.baseAddress else { return nil }
        precondition(range.lowerBound >= 0 && range.upperBound <= bytes.count)
        return uint32(base, range.lowerBound, range.upperBound)
    }

    /// `safe_strtoull`: 64-bit unsigned; negatives refused when they wrap to >= 2^63.
    @inlinable
    public static func uint64(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> UInt64? {
        guard let base = bytes.baseAddress else { return nil }
        precondition(range.lowerBound >= 0 && range.upperBound <= bytes.count)
        return uint64(base, range.lowerBound, range.upperBound)
    }

    /// `safe_strtol` into an `int32_t`: 64-bit signed, then truncated to 32 bits.
    @inlinable
    public static func int32(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Int32? {
        guard let base = bytes.baseAddress else { return nil }
        precondition(range.lowerBound >= 0 && range.upperBound <= bytes.count)
        return int32(base, range.lowerBound, range.upperBound)
    }

    // MARK: - Words already split off a line (administrative commands)

    /// `safe_strtoul` of a word, for the free-form arguments of admin commands.
    public static func uint32(_ word: String) -> UInt32? {
        var word = word
        return word.withUTF8 { uint32(UnsafeRawBufferPointer($0), 0..<$0.count) }
    }

    /// `safe_strtol` of a word into an `int32_t`.
    public static func int32(_ word: String) -> Int32? {
        var word = word
        return word.withUTF8 { int32(UnsafeRawBufferPointer($0), 0..<$0.count) }
    }

    // MARK: - Pointer forms used by the parsers (bounds are the caller's promise).

    @inlinable @inline(__always)
    static func isSpace(_ byte: UInt8) -> Bool {
        // C locale isspace(): \t \n \v \f \r (9...13) and space.
        byte == 0x20 || (byte >= 0x09 && byte <= 0x0D)
    }

    /// The strtoull scan. Returns nil when nothing was converted, the 64-bit magnitude
    /// overflowed (ERANGE), or the digits are followed by a non-space byte.
    @inlinable @inline(__always)
    static func scan(_ base: UnsafeRawPointer, _ start: Int, _ end: Int) -> (negative: Bool, magnitude: UInt64)? {
        // Fast path for what clients send: 1...19 plain digits filling the token
        // (19 digits cannot overflow a UInt64).
        if end > start && end - start <= 19 {
            var value: UInt64 = 0
            var index = start
            while index < end {
                let digit = base.load(fromByteOffset: index, as: UInt8.self) &- UInt8(ascii: "0")
                if digit > 9 { break }
                value = value &* 10 &+ UInt64(digit)
                index += 1
            }
            if index == end { return (false, value) }
        }
        var index = start
        while index < end && isSpace(base.load(fromByteOffset: index, as: UInt8.self)) { index += 1 }
        var negative = false
        if index < end {
            let sign = base.load(fromByteOffset: index, as: UInt8.self)
            if sign == UInt8(ascii: "-") || sign == UInt8(ascii: "+") {
                negative = sign == UInt8(ascii: "-")
                index += 1
            }
        }
        let digitsStart = index
        var magnitude: UInt64 = 0
        var overflow = false
        while index < end {
            let digit = base.load(fromByteOffset: index, as: UInt8.self) &- UInt8(ascii: "0")
            if digit > 9 { break }
            let (times10, o1) = magnitude.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(UInt64(digit))
            overflow = overflow || o1 || o2
            magnitude = sum
            index += 1
        }
        if index == digitsStart || overflow { return nil }
        if index < end && !isSpace(base.load(fromByteOffset: index, as: UInt8.self)) { return nil }
        return (negative, magnitude)
    }

    @inlinable
    static func uint64(_ base: UnsafeRawPointer, _ start: Int, _ end: Int) -> UInt64? {
        guard let (negative, magnitude) = scan(base, start, end) else { return nil }
        let value = negative ? 0 &- magnitude : magnitude
        // safe_strtoull refuses a '-' only when the result looks negative as a signed number.
        if negative && Int64(bitPattern: value) < 0 { return nil }
        return value
    }

    @inlinable
    static func uint32(_ base: UnsafeRawPointer, _ start: Int, _ end: Int) -> UInt32? {
        guard let value = uint64(base, start, end) else { return nil }
        return UInt32(truncatingIfNeeded: value)
    }

    @inlinable
    static func int64(_ base: UnsafeRawPointer, _ start: Int, _ end: Int) -> Int64? {
        guard let (negative, magnitude) = scan(base, start, end) else { return nil }
        if negative {
            if magnitude > UInt64(Int64.max) + 1 { return nil }
            return Int64(bitPattern: 0 &- magnitude)
        }
        if magnitude > UInt64(Int64.max) { return nil }
        return Int64(magnitude)
    }

    @inlinable
    static func int32(_ base: UnsafeRawPointer, _ start: Int, _ end: Int) -> Int32? {
        guard let value = int64(base, start, end) else { return nil }
        return Int32(truncatingIfNeeded: value)
    }
}
