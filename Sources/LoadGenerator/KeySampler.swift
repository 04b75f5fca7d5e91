/// Which key index a request uses (`--key-pattern`).
public enum KeyPattern: String, CaseIterable, Sendable, Codable {
    /// Every key equally likely.
    case uniform
    /// A few hot keys (see `ZipfDistribution`).
    case zipf
    /// 0, 1, 2, ... wrapping; each thread starts at its own share of the key space.
    case sequential
}

/// Draws key indexes for one worker thread. Not shared between threads.
public struct KeySampler {
    private enum Mode {
        case uniform
        case zipf(ZipfDistribution)
        case sequential
    }

    private let mode: Mode
    private let keyCount: UInt64
    private var cursor: UInt64
    public var random: FastRandom

    /// `zipf` must be given for `.zipf` (built once and shared by all threads).
    public init(pattern: KeyPattern, keyCount: UInt64, zipf: ZipfDistribution?, random: FastRandom,
                threadIndex: Int = 0, threadCount: Int = 1) {
        switch pattern {
        case .uniform: mode = .uniform
        case .zipf:
            guard let zipf else { preconditionFailure("a zipf sampler needs its distribution") }
            mode = .zipf(zipf)
        case .sequential: mode = .sequential
        }
        self.keyCount = keyCount
        self.random = random
        // Threads walk disjoint stretches first, so a sequential pass is spread out.
        // keyCount * threadIndex / threadCount, without overflow: the quotient is below keyCount.
        precondition(threadIndex >= 0 && threadIndex < threadCount)
        cursor = UInt64(threadCount).dividingFullWidth(keyCount.multipliedFullWidth(by: UInt64(threadIndex))).quotient
    }

    @inline(__always)
    public mutating func next() -> UInt64 {
        switch mode {
        case .uniform:
            return random.next(below: keyCount)
        case .zipf(let distribution):
            return distribution.sample(&random)
        case .sequential:
            let index = cursor
            cursor += 1
            if cursor == keyCount { cursor = 0 }
            return index
        }
    }
}
