import Foundation
import Histogram

/// Latencies in nanoseconds, 1 ns to 60 s at 3 significant digits (HDR histogram,
/// ~220 KB). One per operation type per thread, merged when the run ends.
public struct LatencyHistogram: Sendable {
    public private(set) var histogram: Histogram<UInt64>
    public static let highestTrackable: UInt64 = 60_000_000_000

    public init() {
        histogram = Histogram(lowestDiscernibleValue: 1, highestTrackableValue: LatencyHistogram.highestTrackable,
                              numberOfSignificantValueDigits: .three)
    }

    /// Values above 60 s are recorded as 60 s (and show as such in `max`).
    @inline(__always)
    public mutating func record(_ nanoseconds: UInt64) {
        histogram.record(min(nanoseconds, LatencyHistogram.highestTrackable))
    }

    public mutating func add(_ other: LatencyHistogram) {
        histogram.add(other.histogram)
    }

    public var count: UInt64 { histogram.totalCount }

    /// Percentiles in microseconds.
    public var summary: LatencySummary {
        guard histogram.totalCount > 0 else { return LatencySummary() }
        func micros(_ nanoseconds: UInt64) -> Double { Double(nanoseconds) / 1000 }
        return LatencySummary(
            count: histogram.totalCount,
            mean: histogram.mean.rounded() / 1000,
            p50: micros(histogram.valueAtPercentile(50)),
            p90: micros(histogram.valueAtPercentile(90)),
            p99: micros(histogram.valueAtPercentile(99)),
            p99_9: micros(histogram.valueAtPercentile(99.9)),
            max: micros(histogram.max))
    }

    /// The whole distribution as HDR tools plot it: percentiles 0, then closing on
    /// 100 by a quarter of a halving at a time (50, 59.5, 67.8, 75, ... 99.9...),
    /// while the part above still holds a recorded value, then 100 (the max).
    /// Plotted against 1 / (1 - percentile) on a log axis, every "nine" gets the
    /// same width, so the tail is as readable as the median.
    public var curve: [PercentilePoint] {
        let total = histogram.totalCount
        guard total > 0 else { return [] }
        var points: [PercentilePoint] = []
        for step in 0..<Self.curveStepLimit {
            let above = pow(0.5, Double(step) / 4)
            if above * Double(total) < 1 { break }
            let percentile = 100 * (1 - above)
            points.append(PercentilePoint(percentile: percentile,
                                          us: Double(histogram.valueAtPercentile(percentile)) / 1000))
        }
        points.append(PercentilePoint(percentile: 100, us: Double(histogram.max) / 1000))
        return points
    }

    /// 2^-(160/4) is below one in a trillion: more than any run records.
    static let curveStepLimit = 160
}

/// One point of a latency curve: `us` microseconds at `percentile` (0-100).
public struct PercentilePoint: Codable, Sendable, Equatable {
    public var percentile: Double
    public var us: Double
}

/// Latency percentiles in microseconds (nanosecond precision, 3 significant digits).
public struct LatencySummary: Codable, Sendable, Equatable {
    public var count: UInt64 = 0
    public var mean: Double = 0
    public var p50: Double = 0
    public var p90: Double = 0
    public var p99: Double = 0
    public var p99_9: Double = 0
    public var max: Double = 0
}
