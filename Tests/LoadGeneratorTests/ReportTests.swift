import Foundation
import Testing
@testable import LoadGenerator

/// The JSON keys scripts rely on, by path.
let expectedReportKeys: Set<String> = [
    "tool", "config", "servers", "duration_seconds", "warmup_seconds", "ops", "ops_per_second", "gets", "sets",
    "get_keys", "hits", "misses", "hit_ratio", "not_stored", "errors", "latency_us", "bytes", "client_cpu", "interrupted",
]

func jsonObject(_ report: BenchReport) throws -> [String: Any] {
    let text = try ReportFormatter.json(report)
    return try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
}

extension BenchReport {
    static func sample(openLoop: Bool) throws -> BenchReport {
        var configuration = BenchConfiguration()
        configuration.rate = openLoop ? 1000 : nil
        var get = LatencyHistogram()
        for micros: UInt64 in 1...1000 { get.record(micros * 1000) }
        let latency = get.summary
        return BenchReport(
            config: ReportConfiguration(configuration),
            servers: [ServerReport(address: "127.0.0.1:11211", version: "1.6.18")],
            fill: nil, durationSeconds: 2, warmupSeconds: 0, ops: 1000, opsPerSecond: 500, gets: 900, sets: 100,
            getKeys: 900, hits: 800, misses: 100, hitRatio: 800.0 / 900.0, notStored: 0,
            errors: ErrorReport(total: 0, serverErrors: 0, protocolErrors: 0, connectionErrors: 0, timeouts: 0,
                                verifyFailures: 0, unfinishedRequests: 0),
            latencyUs: LatencyReport(get: latency, set: LatencySummary(), all: latency, curve: get.curve),
            bytes: ByteReport(sent: 10, received: 20),
            clientCpu: CPUReport(userSeconds: 0.001, systemSeconds: 0.002, usPerRequest: 3, processTotalSeconds: 0.01),
            openLoop: openLoop ? OpenLoopReport(targetRate: 1000, scheduled: 1000, late: 1, lateThresholdUs: 1000,
                                                waitedForPipeline: 2, unsent: 0, dispatchLagUs: LatencySummary(),
                                                generatorBehind: false) : nil,
            interrupted: false)
    }
}

@Suite struct ReportTests {
    @Test func jsonHasTheDocumentedShape() throws {
        let object = try jsonObject(try .sample(openLoop: false))
        #expect(expectedReportKeys.isSubset(of: Set(object.keys)), "missing: \(expectedReportKeys.subtracting(object.keys))")
        #expect(object["open_loop"] == nil)
        let latency = try #require(object["latency_us"] as? [String: Any])
        for kind in ["get", "set", "all"] {
            let summary = try #require(latency[kind] as? [String: Any])
            #expect(Set(summary.keys) == ["count", "mean", "p50", "p90", "p99", "p99_9", "max"])
        }
        let curve = try #require(latency["curve"] as? [[String: Any]])
        #expect(curve.allSatisfy { Set($0.keys) == ["percentile", "us"] } && !curve.isEmpty)
        let all = try #require(latency["all"] as? [String: Any])
        #expect((all["p50"] as? Double).map { abs($0 - 500) < 1 } == true)
        #expect((all["p99_9"] as? Double).map { abs($0 - 999) < 1.5 } == true)
        let errors = try #require(object["errors"] as? [String: Any])
        #expect(Set(["total", "server_errors", "protocol_errors", "connection_errors", "timeouts", "verify_failures",
                     "unfinished_requests"]).isSubset(of: Set(errors.keys)))
        let cpu = try #require(object["client_cpu"] as? [String: Any])
        #expect(Set(["user_seconds", "system_seconds", "us_per_request"]).isSubset(of: Set(cpu.keys)))
        let bytes = try #require(object["bytes"] as? [String: Any])
        #expect(bytes["sent"] as? Int == 10 && bytes["received"] as? Int == 20)
        let config = try #require(object["config"] as? [String: Any])
        #expect(config["connections_per_thread"] as? Int == 50)
        #expect(config["protocol"] as? String == "text")
    }

    @Test func openLoopRunsReportTheirSchedule() throws {
        let object = try jsonObject(try .sample(openLoop: true))
        let open = try #require(object["open_loop"] as? [String: Any])
        #expect(Set(open.keys) == ["target_rate", "scheduled", "late", "late_threshold_us", "waited_for_pipeline", "unsent",
                                   "dispatch_lag_us", "generator_behind"])
    }

    @Test func tableShowsEveryOperationType() throws {
        let table = ReportFormatter.table(try .sample(openLoop: true))
        for word in ["Sets", "Gets", "Totals", "p99.9 us", "client CPU", "open loop", "hit ratio 88.89%"] {
            #expect(table.contains(word), "\(word)")
        }
    }

    @Test func countsOfOneAreSingular() throws {
        var report = try BenchReport.sample(openLoop: false)
        var configuration = BenchConfiguration()
        configuration.threads = 1
        configuration.connectionsPerThread = 1
        configuration.keyCount = 1
        configuration.bound = .requests(1)
        report.config = BenchReport.ReportConfiguration(configuration)
        (report.ops, report.gets, report.getKeys, report.sets) = (1, 1, 1, 0)
        let table = ReportFormatter.table(report)
        for phrase in ["1 thread x 1 connection,", "workload: 1 key (", ", 1 request", "1 op (1 get for 1 key, 0 sets)"] {
            #expect(table.contains(phrase), "\(phrase)")
        }
        #expect(ReportFormatter.table(try .sample(openLoop: false)).contains("1 thread x 50 connections,"))
    }

    @Test func histogramSummariesAreInMicroseconds() {
        var histogram = LatencyHistogram()
        histogram.record(250_000)
        histogram.record(UInt64.max)       // clamped to 60 s, not dropped
        let summary = histogram.summary
        #expect(summary.count == 2)
        #expect(abs(summary.p50 - 250) < 0.5)
        #expect(abs(summary.max - 60_000_000) < 60_000)
    }
}

@Suite struct LatencyCurveTests {
    @Test func climbsFromTheMinimumToTheMaximum() throws {
        var histogram = LatencyHistogram()
        for micros: UInt64 in 1...1000 { histogram.record(micros * 1000) }
        let curve = histogram.curve
        let first = try #require(curve.first), last = try #require(curve.last)
        #expect(first.percentile == 0 && abs(first.us - 1) < 0.01)
        #expect(last.percentile == 100 && abs(last.us - 1000) < 1)
        for (lower, upper) in zip(curve, curve.dropFirst()) {
            #expect(lower.percentile < upper.percentile && lower.us <= upper.us)
        }
        let median = try #require(curve.first { $0.percentile == 50 })
        #expect(abs(median.us - 500) < 1)
        // Points stop before fewer than one of the 1000 values would lie above: the
        // last before the max leaves between 1 and 2^(1/4) values above it.
        let tail = curve[curve.count - 2]
        #expect(tail.percentile > 99.88 && tail.percentile <= 99.9, "\(tail.percentile)")
        // Four points per halving of what lies above, and log2(1000) ~ 10 halvings.
        #expect((38...43).contains(curve.count), "\(curve.count) points")
    }

    @Test func emptyHistogramHasNoCurve() {
        #expect(LatencyHistogram().curve.isEmpty)
    }

    @Test func oneValueIsAFlatCurve() {
        var histogram = LatencyHistogram()
        histogram.record(7_000)
        #expect(histogram.curve.map(\.percentile) == [0, 100])
        #expect(histogram.curve.allSatisfy { abs($0.us - 7) < 0.01 })
    }
}

@Suite struct InFlightQueueTests {
    @Test func keepsOrderAcrossTheWrap() {
        var queue = InFlightQueue(capacity: 3)
        func request(_ origin: UInt64) -> PendingRequest {
            PendingRequest(origin: origin, kind: .textGet, measured: origin % 2 == 0, fill: false, keys: 1, hits: 0)
        }
        var popped: [UInt64] = []
        for round: UInt64 in 0..<5 {
            queue.push(request(round * 2))
            queue.push(request(round * 2 + 1))
            queue.front.pointee.hits = 7
            let first = queue.popFront()
            #expect(first.hits == 7)
            popped.append(first.origin)
            popped.append(queue.popFront().origin)
        }
        #expect(popped == Array(0..<10))
        queue.push(request(2))
        queue.push(request(3))
        queue.push(request(4))
        let full = queue.isFull
        #expect(full)
        let dropped = queue.removeAll()
        let empty = queue.isEmpty
        #expect(dropped.total == 3 && dropped.measured == 2 && empty)
    }
}
