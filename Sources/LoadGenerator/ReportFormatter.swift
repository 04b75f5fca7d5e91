import Foundation

/// Turns a `BenchReport` into the end-of-run table and into JSON.
public enum ReportFormatter {
    public static func json(_ report: BenchReport) throws -> String {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(report), as: UTF8.self)
    }

    public static func writeJSON(_ report: BenchReport, to path: String) throws {
        try Data((try json(report) + "\n").utf8).write(to: URL(fileURLWithPath: path))
    }

    public static func table(_ report: BenchReport) -> String {
        let config = report.config
        var lines: [String] = []
        let bound = config.requests.map { counted($0, "request") } ?? "\(format(config.durationSeconds ?? 0, 1)) s"
        let load = config.rate.map { "open loop at \(Int($0)) req/s" } ?? "closed loop"
        lines.append("memcluster-bench: \(config.servers.joined(separator: ", ")) | \(counted(config.threads, "thread")) x \(counted(config.connectionsPerThread, "connection")), pipeline \(config.pipeline) | \(load) | \(config.protocol.rawValue) protocol")
        lines.append("workload: \(counted(config.keys, "key")) (\(config.keyPattern.rawValue), \(config.keySize) B), values \(config.valueSize) B, ratio \(config.ratio), multiget \(config.multiget), \(bound)\(config.warmupSeconds > 0 ? " after \(format(config.warmupSeconds, 1)) s warm-up" : ""), seed \(config.seed)")
        for server in report.servers where server.version != nil {
            lines.append("server \(server.address): \(server.version!)")
        }
        if let fill = report.fill {
            lines.append("fill: \(fill.stored)/\(fill.sets) sets stored in \(format(fill.seconds, 2)) s, \(fill.failed) failed")
        }
        lines.append("")
        let header = ["Type", "Ops/s", "Hits/s", "Misses/s", "Avg us", "p50 us", "p90 us", "p99 us", "p99.9 us", "Max us", "KB/s"]
        var rows = [header]
        let seconds = max(report.durationSeconds, 1e-9)
        func latencyColumns(_ l: LatencySummary) -> [String] {
            [l.mean, l.p50, l.p90, l.p99, l.p99_9, l.max].map { l.count > 0 ? format($0, 1) : "-" }
        }
        rows.append(["Sets", format(Double(report.sets) / seconds, 1), "-", "-"] + latencyColumns(report.latencyUs.set) + ["-"])
        rows.append(["Gets", format(Double(report.gets) / seconds, 1), format(Double(report.hits) / seconds, 1),
                     format(Double(report.misses) / seconds, 1)] + latencyColumns(report.latencyUs.get) + ["-"])
        rows.append(["Totals", format(report.opsPerSecond, 1), "-", "-"] + latencyColumns(report.latencyUs.all)
                    + [format(Double(report.bytes.sent + report.bytes.received) / 1024 / seconds, 1)])
        var widths = [Int](repeating: 0, count: header.count)
        for row in rows { for (column, cell) in row.enumerated() { widths[column] = max(widths[column], cell.count) } }
        for row in rows {
            let cells = row.enumerated().map { column, cell in
                column == 0 ? cell.padding(toLength: widths[0], withPad: " ", startingAt: 0)
                            : String(repeating: " ", count: widths[column] - cell.count) + cell
            }
            lines.append(cells.joined(separator: "  "))
        }
        lines.append("")
        lines.append("measured \(format(report.durationSeconds, 2)) s: \(counted(report.ops, "op")) (\(counted(report.gets, "get")) for \(counted(report.getKeys, "key")), \(counted(report.sets, "set"))), hit ratio \(format(report.hitRatio * 100, 2))%\(report.notStored > 0 ? ", \(counted(report.notStored, "set")) not stored" : "")")
        lines.append("bytes: \(report.bytes.sent) sent, \(report.bytes.received) received")
        let errors = report.errors
        lines.append("errors: \(errors.total) (server replies \(errors.serverErrors), protocol \(errors.protocolErrors), connection \(errors.connectionErrors), timeouts \(errors.timeouts), verify \(errors.verifyFailures)); unfinished requests \(errors.unfinishedRequests)")
        if let first = errors.firstServerError { lines.append("  first server error: \(first)") }
        if let first = errors.firstVerifyFailure { lines.append("  first verify failure: \(first)") }
        if let open = report.openLoop {
            lines.append("open loop: \(open.scheduled) scheduled at \(format(open.targetRate, 0)) req/s; \(open.late) sent > \(format(open.lateThresholdUs / 1000, 0)) ms late, \(open.waitedForPipeline) waited for the pipeline, \(open.unsent) unsent")
            lines.append("generator's own dispatch lag: p50 \(format(open.dispatchLagUs.p50, 1)) us, p99 \(format(open.dispatchLagUs.p99, 1)) us, max \(format(open.dispatchLagUs.max, 1)) us")
            if open.generatorBehind {
                lines.append("WARNING: the load generator fell behind its own schedule (dispatch lag p99 over \(format(open.lateThresholdUs / 1000, 0)) ms); the latencies include its delay. Give it a core of its own or lower --rate.")
            }
        }
        let cpu = report.clientCpu
        lines.append("client CPU: \(format(cpu.usPerRequest, 2)) us/request (user \(format(cpu.userSeconds, 2)) s, system \(format(cpu.systemSeconds, 2)) s over the measured window)")
        if report.interrupted { lines.append("interrupted: results cover the run until Ctrl-C") }
        return lines.joined(separator: "\n") + "\n"
    }

    static func format(_ value: Double, _ decimals: Int) -> String {
        String(format: "%.\(decimals)f", value)
    }
}
