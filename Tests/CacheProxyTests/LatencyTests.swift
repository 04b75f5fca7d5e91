@testable import CacheProxy
import Testing

@Suite("Latency histograms")
struct LatencyHistogramTests {
    @Test("a latency falls in the first bucket whose bound it does not exceed; slower ones overflow")
    func buckets() {
        let histograms = LatencyHistograms(series: 2)
        for nanoseconds: Int64 in [0, 20_000, 20_001, 150_000, 5_000_000_000, 6_000_000_000, -5] {
            histograms.record(series: 1, nanoseconds: nanoseconds)
        }
        histograms.record(series: 2, nanoseconds: 1)  // no such series: ignored
        var snapshot = LatencyHistograms.Snapshot()
        histograms.add(into: &snapshot, series: 1)
        #expect(snapshot.counts[0] == 3, "0, 20 µs and a negative reading (counted as 0)")
        #expect(snapshot.counts[1] == 1 && snapshot.counts[3] == 1)
        #expect(snapshot.counts[LatencyHistograms.bounds.count - 1] == 1, "exactly 5 s")
        #expect(snapshot.counts.last == 1, "over 5 s")
        #expect(snapshot.count == 7)
        #expect(snapshot.sumNanoseconds == 11_000_190_001)
        var empty = LatencyHistograms.Snapshot()
        histograms.add(into: &empty, series: 0)
        #expect(empty.count == 0)
    }

    @Test("buckets are cumulative in seconds, ending with +Inf")
    func cumulative() {
        let histograms = LatencyHistograms(series: 1)
        histograms.record(series: 0, nanoseconds: 30_000)
        histograms.record(series: 0, nanoseconds: 3_000_000)
        var snapshot = LatencyHistograms.Snapshot()
        histograms.add(into: &snapshot)
        let buckets = snapshot.cumulative
        #expect(buckets.first! == ("0.00002", 0))
        #expect(buckets[1] == ("0.00005", 1))
        #expect(buckets.first { $0.le == "0.005" }!.count == 2)
        #expect(buckets.last! == ("+Inf", 2))
        #expect(LatencyHistograms.Snapshot.seconds(1_500_000_000) == "1.5")
        #expect(LatencyHistograms.Snapshot.seconds(5_000_000_000) == "5")
        #expect(LatencyHistograms.Snapshot.seconds(0) == "0")
    }
}

@Suite("Latency through the proxy")
struct ProxyLatencyTests {
    private func snapshot(_ histograms: LatencyHistograms, series: Int) -> LatencyHistograms.Snapshot {
        var snapshot = LatencyHistograms.Snapshot()
        histograms.add(into: &snapshot, series: series)
        return snapshot
    }

    @Test("a get answered 3 ms after it came counts 3 ms for the request and for its node")
    func requestAndNode() {
        let bed = ProxyTestBed()
        let client = bed.connectClient()
        client.send("get k1\r\n")
        let primary = bed.primary(of: "k1")
        _ = primary.takeSent()
        bed.clock += 3
        primary.reply("END\r\n")
        bed.run()
        #expect(client.takeText() == "END\r\n")
        let request = snapshot(bed.context.requestLatency[0], series: RequestClass.get.rawValue)
        #expect(request.count == 1 && request.sumNanoseconds == 3_000_000)
        #expect(request.cumulative.first { $0.le == "0.002" }!.count == 0)
        #expect(request.cumulative.first { $0.le == "0.005" }!.count == 1)
        let node = snapshot(primary.node.latency, series: 0)
        #expect(node.count == 1 && node.sumNanoseconds == 3_000_000)
        for other in RequestClass.allCases where other != .get {
            #expect(snapshot(bed.context.requestLatency[0], series: other.rawValue).count == 0)
        }
    }

    @Test("each command class is kept apart; a request answered by the proxy itself is `other`")
    func classes() {
        let bed = ProxyTestBed(replicas: 1)
        let client = bed.connectClient()
        client.send("version\r\nbogus\r\n")
        bed.run()
        let primary = bed.primary(of: "k1")
        client.send("delete k1\r\n")
        #expect(primary.takeSent() == "delete k1\r\n")
        primary.reply("DELETED\r\n")
        client.send("incr k1 1\r\n")
        #expect(primary.takeSent() == "incr k1 1\r\n")
        primary.reply("NOT_FOUND\r\n")
        bed.run()
        #expect(client.takeText() == "VERSION 1.6.18-memcluster-proxy\r\nERROR\r\nDELETED\r\nNOT_FOUND\r\n")
        let latency = bed.context.requestLatency[0]
        #expect(snapshot(latency, series: RequestClass.other.rawValue).count == 2)
        #expect(snapshot(latency, series: RequestClass.delete.rawValue).count == 1)
        #expect(snapshot(latency, series: RequestClass.arithmetic.rawValue).count == 1)
        #expect(snapshot(latency, series: RequestClass.get.rawValue).count == 0)
    }
}
