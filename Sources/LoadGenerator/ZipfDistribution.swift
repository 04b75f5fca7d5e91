import Glibc

/// Zipf over key indexes 0..<keyCount: P(i) proportional to 1 / (i + 1)^exponent,
/// so index 0 is the hottest key.
///
/// Sampled with Vose's alias method: built once in O(keyCount) and shared by all
/// threads; one draw is one random number, one multiply and two table reads, with
/// no floating point. Tables take 8 bytes per key (800 KB for 100k keys).
public final class ZipfDistribution: Sendable {
    public let keyCount: UInt64
    public let exponent: Double
    /// Column `i` keeps itself when the low 32 random bits are below `thresholds[i]`.
    private let thresholds: [UInt32]
    private let aliases: [UInt32]

    public init(keyCount: UInt64, exponent: Double) {
        precondition(keyCount >= 1 && keyCount <= UInt64(UInt32.max), "zipf keys must fit in 32 bits")
        precondition(exponent > 0 && exponent.isFinite)
        self.keyCount = keyCount
        self.exponent = exponent
        let count = Int(keyCount)
        var weights = [Double](repeating: 0, count: count)
        var total = 0.0
        for index in 0..<count {
            let weight = 1.0 / pow(Double(index + 1), exponent)
            weights[index] = weight
            total += weight
        }
        // Scale so the average column holds exactly 1.
        let scale = Double(count) / total
        var small: [Int] = []
        var large: [Int] = []
        small.reserveCapacity(count)
        large.reserveCapacity(count / 4)
        for index in 0..<count {
            weights[index] *= scale
            if weights[index] < 1 { small.append(index) } else { large.append(index) }
        }
        var thresholds = [UInt32](repeating: UInt32.max, count: count)
        var aliases = [UInt32](repeating: 0, count: count)
        for index in 0..<count { aliases[index] = UInt32(index) }
        while let lower = small.popLast() {
            guard let upper = large.last else { break }
            thresholds[lower] = ZipfDistribution.threshold(weights[lower])
            aliases[lower] = UInt32(upper)
            weights[upper] -= 1 - weights[lower]
            if weights[upper] < 1 {
                large.removeLast()
                small.append(upper)
            }
        }
        // Whatever is left holds (up to rounding) exactly 1: keeps itself always.
        self.thresholds = thresholds
        self.aliases = aliases
    }

    private static func threshold(_ probability: Double) -> UInt32 {
        let scaled = (probability * 4_294_967_296.0).rounded()
        return scaled >= 4_294_967_295 ? UInt32.max : UInt32(max(0, scaled))
    }

    @inline(__always)
    public func sample(_ random: inout FastRandom) -> UInt64 {
        let draw = random.next()
        // High half picks the column, low half flips its biased coin.
        // Parenthesised: Swift shifts bind tighter than multiplication.
        let column = Int(((draw >> 32) &* keyCount) >> 32)
        let coin = UInt32(truncatingIfNeeded: draw)
        return coin < thresholds[column] ? UInt64(column) : UInt64(aliases[column])
    }

    /// The exact probability of `index`, for tests.
    public func probability(of index: UInt64) -> Double {
        var total = 0.0
        for rank in 0..<keyCount { total += 1.0 / pow(Double(rank + 1), exponent) }
        return 1.0 / pow(Double(index + 1), exponent) / total
    }
}
