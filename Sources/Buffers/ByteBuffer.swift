#if canImport(Glibc)
import Glibc
#endif

/// A growable byte buffer over one malloc'ed block: bytes are appended at the
/// write end and consumed from the read end.
///
/// Connections own one for input and one for output; parsers read the bytes in
/// place through `readableBytes`. Noncopyable so that exactly one owner frees it.
public struct ByteBuffer: ~Copyable {
    @usableFromInline var base: UnsafeMutableRawPointer
    @usableFromInline var capacity: Int
    @usableFromInline var readIndex: Int = 0
    @usableFromInline var writeIndex: Int = 0

    public init(capacity: Int) {
        precondition(capacity > 0)
        // Safe because malloc either returns a block of `capacity` bytes or we stop here.
        guard let block = malloc(capacity) else { fatalError("out of memory allocating a \(capacity)-byte buffer") }
        self.base = block
        self.capacity = capacity
    }

    deinit { free(base) }

    /// Bytes written and not yet consumed.
    @inlinable public var readableCount: Int { writeIndex - readIndex }
    @inlinable public var isEmpty: Bool { writeIndex == readIndex }
    /// Space left at the write end before the buffer must grow or compact.
    @inlinable public var writableCount: Int { capacity - writeIndex }
    @inlinable public var allocatedCapacity: Int { capacity }

    /// The unconsumed bytes. Valid until the next mutation of the buffer.
    @inlinable public var readableBytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + readIndex, count: writeIndex - readIndex)
    }

    /// Marks `count` readable bytes as consumed; an emptied buffer rewinds to the start.
    @inlinable public mutating func consume(_ count: Int) {
        precondition(count >= 0 && count <= readableCount)
        readIndex += count
        if readIndex == writeIndex {
            readIndex = 0
            writeIndex = 0
        }
    }

    public mutating func removeAll() {
        readIndex = 0
        writeIndex = 0
    }

    /// Makes room for at least `count` more bytes at the write end, first by moving
    /// the readable bytes to the front, then by growing.
    @inlinable public mutating func reserveWritable(_ count: Int) {
        if writableCount >= count { return }
        makeRoom(count)
    }

    @usableFromInline mutating func makeRoom(_ count: Int) {
        let readable = readableCount
        if readIndex > 0 {
            memmove(base, base + readIndex, readable)
            readIndex = 0
            writeIndex = readable
            if writableCount >= count { return }
        }
        var newCapacity = capacity
        while newCapacity - readable < count { newCapacity *= 2 }
        guard let grown = realloc(base, newCapacity) else {
            fatalError("out of memory growing a buffer to \(newCapacity) bytes")
        }
        base = grown
        capacity = newCapacity
    }

    /// Gives back memory after a burst (a huge value) once the buffer is empty.
    public mutating func shrink(to target: Int) {
        guard capacity > target, readableCount == 0, let smaller = realloc(base, target) else { return }
        base = smaller
        capacity = target
        readIndex = 0
        writeIndex = 0
    }

    /// The free space at the write end, for a `read(2)` or an encoder to fill;
    /// call `commitWritten` with the number of bytes actually placed there.
    @inlinable public var writableSpace: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: base + writeIndex, count: capacity - writeIndex)
    }

    @inlinable public mutating func commitWritten(_ count: Int) {
        precondition(count >= 0 && count <= writableCount)
        writeIndex += count
    }

    @inlinable public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard let source = bytes.baseAddress, bytes.count > 0 else { return }
        reserveWritable(bytes.count)
        (base + writeIndex).copyMemory(from: source, byteCount: bytes.count)
        writeIndex += bytes.count
    }

    @inlinable public mutating func append(_ text: StaticString) {
        append(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    @inlinable public mutating func append(byte: UInt8) {
        reserveWritable(1)
        base.storeBytes(of: byte, toByteOffset: writeIndex, as: UInt8.self)
        writeIndex += 1
    }

    /// Appends a run-time string's UTF-8. (Literals go to the StaticString
    /// overload, which copies without building a String; this one is named
    /// apart so a literal can never land here by overload resolution.)
    public mutating func append(string text: String) {
        var text = text
        text.withUTF8 { append(UnsafeRawBufferPointer($0)) }
    }

    /// Appends `value` in decimal without allocating.
    @inlinable public mutating func appendDecimal(_ value: UInt64) {
        reserveWritable(20)
        writeIndex += DecimalFormatter.write(value, to: base + writeIndex)
    }

    @inlinable public mutating func appendDecimal(_ value: Int64) {
        if value < 0 {
            append(byte: UInt8(ascii: "-"))
            appendDecimal(UInt64(bitPattern: 0 &- value))
        } else {
            appendDecimal(UInt64(value))
        }
    }

    /// Calls `body` with the readable bytes; convenient for tests.
    public func withReadableBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(readableBytes)
    }
}

/// Decimal formatting into raw memory, shared by every encoder.
public enum DecimalFormatter {
    /// "00" "01" ... "99": two digits per table read halves the divisions. A
    /// static string costs no initialisation check, unlike a global array.
    @usableFromInline static let pairs: StaticString = "00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899"

    /// Number of decimal digits of `value`.
    @inlinable static func digitCount(_ value: UInt64) -> Int {
        var count = 1
        var threshold: UInt64 = 10
        while value >= threshold {
            count += 1
            if count == 20 { break }
            threshold &*= 10
        }
        return count
    }

    /// Writes `value` in decimal at `destination` (room for 20 bytes needed) and returns the length.
    @inlinable public static func write(_ value: UInt64, to destination: UnsafeMutableRawPointer) -> Int {
        if value < 10 {
            destination.storeBytes(of: UInt8(truncatingIfNeeded: value) &+ 48, as: UInt8.self)
            return 1
        }
        let digits = digitCount(value)
        var remaining = value
        var index = digits
        let table = pairs.utf8Start
        while remaining >= 100 {
            let pair = Int(remaining % 100) &* 2
            remaining /= 100
            index -= 2
            destination.storeBytes(of: table[pair], toByteOffset: index, as: UInt8.self)
            destination.storeBytes(of: table[pair + 1], toByteOffset: index + 1, as: UInt8.self)
        }
        if remaining >= 10 {
            let pair = Int(remaining) &* 2
            destination.storeBytes(of: table[pair], toByteOffset: 0, as: UInt8.self)
            destination.storeBytes(of: table[pair + 1], toByteOffset: 1, as: UInt8.self)
        } else {
            destination.storeBytes(of: UInt8(truncatingIfNeeded: remaining) &+ 48, toByteOffset: 0, as: UInt8.self)
        }
        return digits
    }
}
