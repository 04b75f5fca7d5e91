// A control for the zero-allocation thresholds: one malloc/free per operation, so
// mallocCountTotal must read exactly 1000 per sample (scalingFactor .kilo). If the
// malloc interposer stopped counting (a missing trait, a toolchain change), every
// other benchmark would read 0 and pass vacuously; this one would then read 0 too
// and `thresholds check` would report it as a deviation from its stored 1000.

import Benchmark

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

let benchmarks: @Sendable () -> Void = {
    Benchmark(
        "one-malloc-per-op",
        configuration: .init(
            metrics: [.wallClock, .mallocCountTotal],
            warmupIterations: 10,
            scalingFactor: .kilo,
            maxDuration: .milliseconds(200),
            maxIterations: 1000,
            thresholds: [.mallocCountTotal: .init(absolute: [.p90: 0])]
        )
    ) { benchmark in
        for _ in benchmark.scaledIterations {
            let block = malloc(64)
            blackHole(block)
            free(block)
        }
    }
}
