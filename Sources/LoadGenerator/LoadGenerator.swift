import EventLoop
import Glibc

// LoadGenerator: drives memcached-protocol servers and measures them.
//
//   BenchCommand (flags) ──► BenchConfiguration ──► LoadGenerator.run
//                                                     │ resolve servers, build Workload (keys, zipf, values)
//                                                     │ one BenchWorker + EventLoop + pthread per --threads
//                                                     ▼
//        worker: connect + probe ──► [fill] ──► begin ──► closed loop / open-loop slots ──► drain ──► stop
//                                                     │
//   main thread: waits on worker phases, prints progress, joins, merges ──► BenchReport (table, JSON)
//
// Workers share nothing mutable: each has its own loop, connections, key sampler,
// scratch key, counters and histograms, merged only after the threads are joined.

/// A set-up failure (connect refused, no probe answer, not a memcached server).
public struct LoadGeneratorError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Runs one benchmark. Create, `run()`, read the report.
public final class LoadGenerator {
    public let configuration: BenchConfiguration
    /// Called on the main thread about once a second with a progress line (nil: silent).
    public var progressHandler: ((String) -> Void)?

    public init(configuration: BenchConfiguration) throws(ConfigurationError) {
        try configuration.validate()
        self.configuration = configuration
    }

    /// Runs set-up, the optional fill, warm-up and the measured phase; blocks until
    /// every worker thread has stopped. Throws only for set-up failures; errors during
    /// the run are counted in the report.
    public func run() throws -> BenchReport {
        let processCPUAtStart = CPUTime.process()
        var addresses: [SocketAddress] = []
        for server in configuration.servers {
            do {
                addresses.append(try SocketAddress(host: server.host, port: server.port))
            } catch {
                throw LoadGeneratorError("cannot resolve \(server): \(error)")
            }
        }
        let workload = Workload(configuration: configuration, addresses: addresses)
        var workers: [BenchWorker] = []
        var threads: [pthread_t] = []
        defer {
            // A failed set-up leaves threads running: stop every loop and join every thread.
            if !threads.isEmpty {
                for worker in workers { worker.loop.execute { worker.abort() } }
                for thread in threads { pthread_join(thread, nil) }
            }
        }
        for index in 0..<configuration.threads {
            let loop = try EventLoop(preciseTimers: workload.isOpenLoop)
            let worker = BenchWorker(index: index, loop: loop, workload: workload)
            workers.append(worker)
            threads.append(try WorkerThread.start(worker))
        }

        for worker in workers { worker.loop.execute { worker.connect() } }
        let setupLimit = MonotonicClock.now() + MonotonicClock.nanoseconds(configuration.timeout * 2 + 1)
        try waitFor(.ready, workers, until: setupLimit, what: "connecting and probing the servers")
        var versions: [Int: String] = [:]
        // Safe to read: each worker published .ready (releasing) after its last probe reply.
        for worker in workers { versions.merge(worker.serverVersions()) { first, _ in first } }

        var fillReport: BenchReport.FillReport?
        if configuration.fill {
            let fillStart = MonotonicClock.now()
            for worker in workers { worker.loop.execute { worker.fill() } }
            let expected = configuration.keyCount * UInt64(configuration.servers.count)
            try waitFor(.filled, workers, until: .max, what: "filling") { [progressHandler] elapsed in
                let done = workers.reduce(UInt64(0)) { $0 + $1.progress.filled.load(ordering: .relaxed) }
                progressHandler?("fill: \(done)/\(expected) sets, \(Int(elapsed)) s")
            }
            fillReport = BenchReport.FillReport(keys: configuration.keyCount, sets: expected, stored: 0, failed: 0,
                                                seconds: Double(MonotonicClock.now() - fillStart) / 1e9)
        }

        // Open-loop threads need a moment to receive `begin` before their first slot.
        let start = MonotonicClock.now() + (workload.isOpenLoop ? 2_000_000 : 0)
        for worker in workers { worker.loop.execute { worker.begin(start: start) } }
        var lastReport = MonotonicClock.now()
        var lastCompleted: UInt64 = 0
        var lastLatencySum: UInt64 = 0
        var interrupted = false
        let warmupEnd = start + MonotonicClock.nanoseconds(configuration.warmup)
        try waitFor(.finished, workers, until: .max, what: "the run") { [progressHandler] _ in
            let now = MonotonicClock.now()
            let completed = workers.reduce(UInt64(0)) { $0 + $1.progress.completed.load(ordering: .relaxed) }
            let latencySum = workers.reduce(UInt64(0)) { $0 + $1.progress.latencySum.load(ordering: .relaxed) }
            let errors = workers.reduce(UInt64(0)) { $0 + $1.progress.errors.load(ordering: .relaxed) }
            let seconds = Double(now - lastReport) / 1e9
            let rate = Double(completed - lastCompleted) / seconds
            let average = completed > lastCompleted ? Double(latencySum - lastLatencySum) / Double(completed - lastCompleted) / 1000 : 0
            // Named after the second the figures cover, not the moment they are printed.
            let phase = lastReport < warmupEnd ? "warm-up" : "run"
            progressHandler?("\(phase) \(Int(Double(now - start) / 1e9)) s: \(Int(rate)) ops/s, \(counted(completed, "op")), avg \(Int(average)) us, \(counted(errors, "error"))")
            lastReport = now
            lastCompleted = completed
            lastLatencySum = latencySum
        } onInterrupt: {
            interrupted = true
            for worker in workers { worker.loop.execute { worker.abort() } }
        }
        for thread in threads { pthread_join(thread, nil) }
        threads.removeAll()

        var report = merge(workers, start: start, versions: versions, fill: fillReport, interrupted: interrupted)
        report.clientCpu.processTotalSeconds = (CPUTime.process() - processCPUAtStart).total
        return report
    }

    /// Polls the workers' phases every 10 ms until all reach `target`; calls `tick`
    /// once a second. Throws the first worker failure.
    private func waitFor(_ target: BenchWorker.Phase, _ workers: [BenchWorker], until limit: UInt64, what: String,
                         tick: ((Double) -> Void)? = nil, onInterrupt: (() -> Void)? = nil) throws {
        let begun = MonotonicClock.now()
        var nextTick = begun + 1_000_000_000
        var interruptHandled = false
        while true {
            var allThere = true
            for worker in workers {
                let phase = worker.currentPhase
                if phase == .failed {
                    throw LoadGeneratorError(worker.failure.withLock { $0 } ?? "worker \(worker.index) failed")
                }
                if phase.rawValue < target.rawValue { allThere = false }
            }
            if allThere { return }
            let now = MonotonicClock.now()
            if now >= limit { throw LoadGeneratorError("timed out \(what)") }
            if now >= nextTick {
                tick?(Double(now - begun) / 1e9)
                nextTick += 1_000_000_000
            }
            if !interruptHandled && InterruptFlag.isSet {
                interruptHandled = true
                guard let onInterrupt else { throw LoadGeneratorError("interrupted while \(what)") }
                onInterrupt()
            }
            var pause = timespec(tv_sec: 0, tv_nsec: 10_000_000)
            nanosleep(&pause, nil)
        }
    }

    private func merge(_ workers: [BenchWorker], start: UInt64, versions: [Int: String],
                       fill: BenchReport.FillReport?, interrupted: Bool) -> BenchReport {
        // Safe to read every worker's statistics: their threads have been joined.
        var getLatency = LatencyHistogram()
        var setLatency = LatencyHistogram()
        var dispatchLag = LatencyHistogram()
        let total = WorkerStatistics()
        var lastCompletion: UInt64 = 0
        var cpu = CPUTime()
        for worker in workers {
            let s = worker.statistics
            getLatency.add(s.getLatency)
            setLatency.add(s.setLatency)
            dispatchLag.add(s.dispatchLag)
            total.add(s)
            lastCompletion = max(lastCompletion, s.lastCompletion)
            cpu = cpu + s.cpu
        }
        var allLatency = getLatency
        allLatency.add(setLatency)
        let measureStart = start + MonotonicClock.nanoseconds(configuration.warmup)
        let duration = lastCompletion > measureStart ? Double(lastCompletion - measureStart) / 1e9 : 0
        let ops = total.completed
        var fillReport = fill
        fillReport?.stored = total.fillStored
        fillReport?.failed = total.fillFailed
        let openLoop = configuration.rate.map { rate in
            let lag = dispatchLag.summary
            let threshold = Double(WorkerStatistics.lateThreshold) / 1000
            return BenchReport.OpenLoopReport(targetRate: rate, scheduled: total.scheduled, late: total.late,
                                              lateThresholdUs: threshold, waitedForPipeline: total.waitedForPipeline,
                                              unsent: total.unsent, dispatchLagUs: lag, generatorBehind: lag.p99 > threshold)
        }
        return BenchReport(
            config: BenchReport.ReportConfiguration(configuration),
            servers: configuration.servers.enumerated().map { BenchReport.ServerReport(address: $1.description, version: versions[$0]) },
            fill: fillReport,
            durationSeconds: duration,
            warmupSeconds: configuration.warmup,
            ops: ops,
            opsPerSecond: duration > 0 ? Double(ops) / duration : 0,
            gets: total.gets, sets: total.sets, getKeys: total.getKeys, hits: total.hits, misses: total.misses,
            hitRatio: total.getKeys > 0 ? Double(total.hits) / Double(total.getKeys) : 0,
            notStored: total.notStored,
            errors: BenchReport.ErrorReport(
                total: total.errors, serverErrors: total.serverErrors, protocolErrors: total.protocolErrors,
                connectionErrors: total.connectionErrors, timeouts: total.timeouts, verifyFailures: total.verifyFailures,
                unfinishedRequests: total.unfinished, firstServerError: total.firstServerError,
                firstVerifyFailure: total.firstVerifyFailure),
            latencyUs: BenchReport.LatencyReport(get: getLatency.summary, set: setLatency.summary, all: allLatency.summary,
                                                 curve: allLatency.count > 0 ? allLatency.curve : nil),
            bytes: BenchReport.ByteReport(sent: total.bytesSent, received: total.bytesReceived),
            clientCpu: BenchReport.CPUReport(userSeconds: cpu.user, systemSeconds: cpu.system,
                                             usPerRequest: ops > 0 ? cpu.total * 1e6 / Double(ops) : 0,
                                             processTotalSeconds: 0),
            openLoop: openLoop,
            interrupted: interrupted)
    }
}
