// Inputs shared by the benchmark targets: fixed-length keys, values, byte streams
// and a shuffled access order, all made before any measurement and kept in memory
// that never moves (so a measured loop touches no allocator).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `count` keys of exactly `length` bytes each, `<prefix><zero-padded index>`, in
/// one block. Key i is `key(i)`.
public final class KeySet: @unchecked Sendable {
    @usableFromInline let base: UnsafeMutableRawPointer
    public let length: Int
    public let count: Int

    public init(count: Int, length: Int, prefix: String = "key:") {
        precondition(count > 0 && length > prefix.utf8.count)
        self.count = count
        self.length = length
        base = .allocate(byteCount: count * length, alignment: 16)
        let prefixBytes = Array(prefix.utf8)
        for index in 0..<count {
            let digits = Array(String(index).utf8)
            let padding = length - prefixBytes.count - digits.count
            precondition(padding >= 0, "key \(index) does not fit in \(length) bytes")
            let bytes = prefixBytes + [UInt8](repeating: UInt8(ascii: "0"), count: padding) + digits
            bytes.withUnsafeBytes { (base + index * length).copyMemory(from: $0.baseAddress!, byteCount: length) }
        }
    }

    deinit { base.deallocate() }

    @inlinable
    public func key(_ index: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + index * length, count: length)
    }

    /// Key `index` as a String, for building request text.
    public func string(_ index: Int) -> String {
        String(decoding: key(index), as: UTF8.self)
    }
}

/// A permutation of 0..<count from a fixed seed: visiting keys in this order defeats
/// the caches and prefetchers as real traffic would (items are laid out in write order).
public final class AccessOrder: @unchecked Sendable {
    @usableFromInline let indices: UnsafeMutablePointer<Int32>
    public let count: Int

    public init(count: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) {
        self.count = count
        indices = .allocate(capacity: count)
        for index in 0..<count { indices[index] = Int32(index) }
        var generator = SplitMix64(seed: seed)
        var index = count - 1
        while index > 0 {
            let other = Int(generator.next() % UInt64(index + 1))
            let swap = indices[index]
            indices[index] = indices[other]
            indices[other] = swap
            index -= 1
        }
    }

    deinit { indices.deallocate() }

    @inlinable
    public subscript(position: Int) -> Int { Int(indices[position]) }
}

/// A byte stream (pipelined requests, replies) in memory of its own.
public final class ByteStream: @unchecked Sendable {
    public let bytes: UnsafeRawBufferPointer
    /// Units (requests or reply units) in the stream.
    public let units: Int

    public init(_ content: [UInt8], units: Int) {
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: max(content.count, 1), alignment: 16)
        memory.copyBytes(from: content)
        bytes = UnsafeRawBufferPointer(rebasing: memory[0..<content.count])
        self.units = units
    }

    deinit { UnsafeMutableRawBufferPointer(mutating: bytes).deallocate() }
}

/// A value of `length` printable bytes (they never contain `\r\n`).
public func makeValue(length: Int, seed: Int = 0) -> [UInt8] {
    (0..<length).map { UInt8(ascii: "a") + UInt8((seed + $0) % 26) }
}

public struct SplitMix64 {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Stops the run with a message: a benchmark whose input did not parse (or whose
/// store missed) would measure something else than it claims.
public func benchmarkInputFailure(_ message: String) -> Never {
    fatalError("benchmark input check failed: \(message)")
}
