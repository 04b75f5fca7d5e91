import Benchmark

extension Benchmark.Configuration {
    /// What every hot-path micro-benchmark runs with: wall clock and throughput
    /// to read, and mallocs to check. Any allocation at all is a regression: the
    /// stored p90 threshold is 0 (Thresholds/).
    public static var zeroAllocation: Benchmark.Configuration {
        Benchmark.Configuration(
            metrics: [.wallClock, .throughput, .mallocCountTotal],
            warmupIterations: 10,
            scalingFactor: .kilo,
            maxDuration: .seconds(1),
            maxIterations: 10_000,
            thresholds: [.mallocCountTotal: .init(absolute: [.p90: 0])]
        )
    }
}
