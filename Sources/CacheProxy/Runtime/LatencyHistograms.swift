import Synchronization

/// Latency histograms in buckets that fit a cache: 20 µs to 5 s, plus one for
/// anything slower. Each series is written by one thread only (a worker), and
/// read by any (a scrape), so recording is a few plain adds: no lock, no
/// allocation, no locked instruction (relaxed load and store of the owner's
/// own slots; readers may see a series a few records behind).
final class LatencyHistograms: @unchecked Sendable {
    /// Upper bounds of the buckets, in nanoseconds (Prometheus' `le`, which is
    /// in seconds: 2e-05 ... 5). A latency equal to a bound falls in its bucket.
    static let bounds: [Int64] = [
        20_000, 50_000, 100_000, 200_000, 500_000,
        1_000_000, 2_000_000, 5_000_000, 10_000_000, 20_000_000, 50_000_000,
        100_000_000, 200_000_000, 500_000_000, 1_000_000_000, 2_000_000_000, 5_000_000_000,
    ]
    /// Slots per series: a count per bucket, the overflow bucket, the sum of nanoseconds.
    private static let stride = bounds.count + 2

    let seriesCount: Int
    private let slots: UnsafeMutablePointer<Atomic<UInt64>>

    init(series: Int) {
        seriesCount = series
        let count = series * LatencyHistograms.stride
        slots = .allocate(capacity: count)
        for index in 0..<count { (slots + index).initialize(to: Atomic(0)) }
    }

    deinit {
        slots.deinitialize(count: seriesCount * LatencyHistograms.stride)
        slots.deallocate()
    }

    /// Records one latency in `series`. Only that series' owning thread may call this.
    @inline(__always)
    func record(series: Int, nanoseconds: Int64) {
        guard series < seriesCount else { return }
        let base = series * LatencyHistograms.stride
        let latency = max(0, nanoseconds)
        var bucket = 0
        let bounds = LatencyHistograms.bounds
        while bucket < bounds.count && latency > bounds[bucket] { bucket += 1 }
        bump(base + bucket, 1)
        bump(base + LatencyHistograms.stride - 1, UInt64(latency))
    }

    @inline(__always)
    private func bump(_ index: Int, _ amount: UInt64) {
        let slot = slots + index
        slot.pointee.store(slot.pointee.load(ordering: .relaxed) &+ amount, ordering: .relaxed)
    }

    /// What a histogram holds at one moment, summed over series.
    struct Snapshot: Equatable {
        /// Per bucket, not cumulative; the last is the overflow bucket.
        var counts = [UInt64](repeating: 0, count: LatencyHistograms.bounds.count + 1)
        var sumNanoseconds: UInt64 = 0

        var count: UInt64 { counts.reduce(0, &+) }

        /// Prometheus' cumulative buckets: (le in seconds, count at or below).
        var cumulative: [(le: String, count: UInt64)] {
            var running: UInt64 = 0
            var result: [(String, UInt64)] = []
            for (index, count) in counts.enumerated() {
                running &+= count
                let le = index < LatencyHistograms.bounds.count
                    ? Snapshot.seconds(LatencyHistograms.bounds[index]) : "+Inf"
                result.append((le, running))
            }
            return result
        }

        /// Nanoseconds as decimal seconds, exactly ("0.00002", "1.5").
        static func seconds(_ nanoseconds: Int64) -> String {
            let whole = nanoseconds / 1_000_000_000
            var fraction = String(nanoseconds % 1_000_000_000)
            fraction = String(repeating: "0", count: 9 - fraction.count) + fraction
            while fraction.last == "0" { fraction.removeLast() }
            return fraction.isEmpty ? String(whole) : "\(whole).\(fraction)"
        }
    }

    /// Adds `series` (or every series) into `snapshot`. Any thread.
    func add(into snapshot: inout Snapshot, series: Int? = nil) {
        let range = series.map { $0..<($0 + 1) } ?? 0..<seriesCount
        for series in range {
            let base = series * LatencyHistograms.stride
            for bucket in 0...LatencyHistograms.bounds.count {
                snapshot.counts[bucket] &+= slots[base + bucket].load(ordering: .relaxed)
            }
            snapshot.sumNanoseconds &+= slots[base + LatencyHistograms.stride - 1].load(ordering: .relaxed)
        }
    }
}

/// The command classes the proxy's request latency is kept by (the `command`
/// label of `memcluster_proxy_request_duration_seconds`).
enum RequestClass: Int, CaseIterable {
    /// get, gets, gat, gats, mg and me of one key.
    case get
    /// A retrieval of several keys.
    case multiget
    /// set, add, replace, append, prepend, cas, ms.
    case set
    /// delete, md.
    case delete
    /// touch.
    case touch
    /// incr, decr, ma.
    case arithmetic
    /// flush_all, and what the proxy answers itself: stats, version, errors, ...
    case other

    var label: String {
        switch self {
        case .get: "get"
        case .multiget: "multiget"
        case .set: "set"
        case .delete: "delete"
        case .touch: "touch"
        case .arithmetic: "arithmetic"
        case .other: "other"
        }
    }
}
