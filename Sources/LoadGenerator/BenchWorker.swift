import Concurrency
import Buffers
import EventLoop
import Glibc
import MemcacheProtocol
import Synchronization

/// One thread of the load generator: an event loop, its connections, and the
/// state that decides what to send next.
///
///   main thread                     worker thread (EventLoop.run)
///   -----------                     -------------------------------------------
///   execute { connect() }      ──►  connect all, probe each (version / mn) ──► phase .ready
///   execute { fill() }         ──►  pipelined sets over its key share       ──► phase .filled
///   execute { begin(start) }   ──►  closed loop: refill on every reply
///                                   open loop:   slot timer → send (or backlog)
///                                   housekeeping every 100 ms: timeouts, end, progress
///                                   end: stop issuing, drain, close          ──► phase .finished
///   pthread_join               ◄──  loop stops
///
/// Everything here runs on the worker's loop thread except `phase`, `failure` and
/// `progress`, which are the main thread's window. `statistics` is read by the
/// main thread only after joining the thread.
final class BenchWorker: @unchecked Sendable {
    enum Phase: Int { case starting = 0, ready = 1, filled = 2, finished = 3, failed = -1 }
    private enum Mode { case setup, filling, running, draining, done }

    let index: Int
    let loop: EventLoop
    let workload: Workload
    let phase = Atomic<Int>(Phase.starting.rawValue)
    let failure = Locked<String?>(nil)
    let progress = PublishedProgress()
    let statistics = WorkerStatistics()
    private(set) var connections: [BenchConnection] = []

    private let configuration: BenchConfiguration
    private let values: ValuePattern
    private let keyLayout: KeyLayout
    private let keyScratch: KeyScratch
    private var sampler: KeySampler
    private let pipeline: Int
    private let multiget: Int
    private let isMeta: Bool
    let verifying: Bool
    private var ratioPosition = 0

    private var mode = Mode.setup
    private var openConnections = 0
    private var pendingProbes = 0
    private var pendingFills = 0
    /// Requests in flight over all connections.
    private var outstanding = 0

    private var measureStart = UInt64.max
    private var endTime = UInt64.max
    /// Measured requests this thread may still issue (`--requests`); .max for a duration.
    private var quota = UInt64.max
    private(set) var measuring = false
    private var cpuAtMeasureStart = CPUTime()

    // Open loop.
    private var schedule: OpenLoopSchedule?
    private var nextSlot: UInt64 = 0
    private var slotsExhausted = false
    private var totalBacklog = 0
    private var slotTimer: EventTimer?
    private var housekeeping: EventTimer?

    /// `--tls-ca`: the client side of every connection's TLS session.
    private var tls: TLSClientContext?

    init(index: Int, loop: EventLoop, workload: Workload) {
        self.index = index
        self.loop = loop
        self.workload = workload
        configuration = workload.configuration
        values = workload.values
        keyLayout = workload.keyLayout
        keyScratch = KeyScratch(layout: workload.keyLayout)
        let seed = SplitMix64.mix(configuration.seed &+ UInt64(index) &* 0x9E37_79B9_7F4A_7C15)
        sampler = KeySampler(pattern: configuration.keyPattern, keyCount: configuration.keyCount, zipf: workload.zipf,
                             random: FastRandom(seed: seed), threadIndex: index, threadCount: configuration.threads)
        pipeline = configuration.pipeline
        multiget = configuration.multiget
        isMeta = configuration.wireProtocol == .meta
        verifying = configuration.verify
    }

    var currentPhase: Phase { Phase(rawValue: phase.load(ordering: .acquiring)) ?? .failed }

    // MARK: Setup

    /// Connects every connection of this thread and sends each its probe. Blocks the
    /// loop while connecting (at most `--timeout` per connection), which is fine
    /// before the run starts.
    func connect() {
        let connectionCount = configuration.connectionsPerThread
        let serverCount = workload.addresses.count
        let queueCapacity = max(pipeline, BenchConfiguration.fillPipeline, 2)
        let timeoutMilliseconds = Int32(configuration.timeout * 1000)
        if let settings = configuration.tls, tls == nil {
            do { tls = try TLSClientContext(settings: settings) } catch { return fail("TLS: \(error)") }
        }
        for local in 0..<connectionCount {
            let global = index * connectionCount + local
            let server = global % serverCount
            let address = workload.addresses[server]
            let fd: Int32
            do {
                fd = try Socket.connect(to: address)
            } catch {
                return fail("connect to \(configuration.servers[server]): \(error)")
            }
            var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            let ready = poll(&poller, 1, timeoutMilliseconds)
            if ready <= 0 {
                Glibc.close(fd)
                return fail("connect to \(configuration.servers[server]): no answer within \(configuration.timeout) s")
            }
            let error = Socket.pendingError(fd)
            if error != 0 {
                Glibc.close(fd)
                return fail("connect to \(configuration.servers[server]): \(String(cString: strerror(error)))")
            }
            let benchConnection = BenchConnection(worker: self, serverIndex: server, globalIndex: global,
                                                  localIndex: local, queueCapacity: queueCapacity)
            // With TLS the handshake starts with the probe's write.
            let connection = tls.map {
                Connection(connecting: fd, loop: loop, handler: benchConnection, tls: $0, peer: configuration.servers[server].host)
            } ?? Connection(fd: fd, loop: loop, handler: benchConnection)
            benchConnection.connection = connection
            benchConnection.lastProgress = MonotonicClock.now()
            connections.append(benchConnection)
            openConnections += 1
            connection.output.append("version\r\n")
            benchConnection.inFlight.push(PendingRequest(origin: 0, kind: .versionProbe, measured: false, fill: false, keys: 0, hits: 0))
            pendingProbes += 1
            if isMeta {
                RequestEncoder.appendMetaNoop(to: &connection.output)
                benchConnection.inFlight.push(PendingRequest(origin: 0, kind: .noopProbe, measured: false, fill: false, keys: 0, hits: 0))
                pendingProbes += 1
            }
            connection.flush()
        }
        housekeeping = EventTimer(loop: loop, milliseconds: 100, repeating: true) { [unowned self] in self.houseKeep() }
        housekeeping?.start()
    }

    func probeAnswered(_ connection: BenchConnection) {
        _ = connection.inFlight.popFront()
        pendingProbes -= 1
        if pendingProbes == 0 && mode == .setup { phase.store(Phase.ready.rawValue, ordering: .releasing) }
    }

    /// Server versions by server index, as the probes reported them.
    func serverVersions() -> [Int: String] {
        var versions: [Int: String] = [:]
        for connection in connections { if let version = connection.serverVersion { versions[connection.serverIndex] = version } }
        return versions
    }

    private func fail(_ message: String) {
        failure.withLock { if $0 == nil { $0 = message } }
        phase.store(Phase.failed.rawValue, ordering: .releasing)
    }

    // MARK: Fill

    /// Writes this thread's share of the key space to every server, pipelined.
    func fill() {
        mode = .filling
        let now = MonotonicClock.now()
        for benchConnection in connections {
            let range = workload.fillRange(globalIndex: benchConnection.globalIndex)
            benchConnection.fillNext = range.lowerBound
            benchConnection.fillEnd = range.upperBound
            pendingFills += 1
            if let connection = benchConnection.connection {
                refillFill(benchConnection, connection, now: now)
                connection.flush()
            }
        }
        if pendingFills == 0 { phase.store(Phase.filled.rawValue, ordering: .releasing) }
    }

    private func refillFill(_ benchConnection: BenchConnection, _ connection: Connection, now: UInt64) {
        let depth = BenchConfiguration.fillPipeline
        while benchConnection.inFlight.count < depth && benchConnection.fillNext < benchConnection.fillEnd {
            let key = benchConnection.fillNext
            benchConnection.fillNext += 1
            encodeSet(key: key, on: benchConnection, connection, origin: now, measured: false, fill: true)
        }
        if benchConnection.fillNext == benchConnection.fillEnd && benchConnection.inFlight.isEmpty {
            benchConnection.fillEnd = 0
            benchConnection.fillNext = 1    // marks the share done
            fillShareDone()
        }
    }

    private func fillShareDone() {
        pendingFills -= 1
        if pendingFills == 0 { phase.store(Phase.filled.rawValue, ordering: .releasing) }
    }

    // MARK: The measured run

    /// Starts issuing. `start` is the common start of all threads (monotonic ns).
    func begin(start: UInt64) {
        guard mode == .setup || mode == .filling, openConnections > 0 else { return finish() }
        mode = .running
        measureStart = start + MonotonicClock.nanoseconds(configuration.warmup)
        switch configuration.bound {
        case .duration(let seconds):
            endTime = measureStart + MonotonicClock.nanoseconds(seconds)
        case .requests(let total):
            let threads = UInt64(configuration.threads)
            quota = total / threads + (UInt64(index) < total % threads ? 1 : 0)
        }
        let now = MonotonicClock.now()
        if let rate = configuration.rate {
            schedule = OpenLoopSchedule(totalRate: rate, threadCount: configuration.threads, threadIndex: index,
                                        connectionsPerThread: configuration.connectionsPerThread, start: start)
            slotTimer = EventTimer(loop: loop, milliseconds: 0, repeating: false) { [unowned self] in self.dispatchDueSlots() }
            dispatchDueSlots()
        } else {
            for benchConnection in connections {
                guard let connection = benchConnection.connection else { continue }
                refill(benchConnection, connection, now: now)
                connection.flush()
            }
            if quota == 0 { beginDrain() }
        }
    }

    private func startMeasuring() {
        measuring = true
        cpuAtMeasureStart = CPUTime.currentThread()
    }

    /// May a closed-loop request go out now? Counts it against the quota if measured.
    @inline(__always)
    private func admitClosedLoop(now: UInt64) -> Bool {
        if now >= endTime { beginDrain(); return false }
        if now >= measureStart {
            if !measuring { startMeasuring() }
            if quota == 0 { beginDrain(); return false }
            quota -= 1
        }
        return true
    }

    /// After a wake-up: new requests for this connection, then the end-of-run check.
    @inline(__always)
    func refill(_ benchConnection: BenchConnection, _ connection: Connection, now: UInt64) {
        switch mode {
        case .running:
            if schedule == nil {
                while benchConnection.inFlight.count < pipeline && admitClosedLoop(now: now) {
                    if benchConnection.inFlight.isEmpty { benchConnection.lastProgress = now }
                    issue(on: benchConnection, connection, origin: now, measured: now >= measureStart, now: now)
                }
            } else {
                sendBacklog(benchConnection, connection, now: now)
            }
        case .draining:
            if schedule != nil { sendBacklog(benchConnection, connection, now: now) }
            if outstanding == 0 && totalBacklog == 0 { finish() }
        case .filling:
            if benchConnection.fillEnd > 0 { refillFill(benchConnection, connection, now: now) }
        case .setup, .done:
            break
        }
    }

    // MARK: Open loop

    /// Sends every slot that is due (or backlogs it), then sleeps until the next one.
    private func dispatchDueSlots() {
        guard let schedule, mode == .running else { return }
        let now = MonotonicClock.now()
        while !slotsExhausted {
            let time = schedule.time(ofSlot: nextSlot)
            if time > now { break }
            if time >= endTime { slotsExhausted = true; break }
            let measured = time >= measureStart
            if measured {
                if !measuring { startMeasuring() }
                if quota == 0 { slotsExhausted = true; break }
                quota -= 1
                statistics.scheduled += 1
                // The generator's own lateness (timer and CPU), whatever the server does.
                statistics.dispatchLag.record(now - time)
            }
            let benchConnection = connections[schedule.connection(ofSlot: nextSlot)]
            if let connection = benchConnection.connection {
                if benchConnection.backlogCount == 0 && benchConnection.inFlight.count < pipeline {
                    if benchConnection.inFlight.isEmpty { benchConnection.lastProgress = now }
                    sendScheduled(slotTime: time, measured: measured, on: benchConnection, connection, now: now)
                    connection.flush()
                } else {
                    if benchConnection.backlogCount == 0 { benchConnection.backlogFirstSlot = nextSlot }
                    benchConnection.backlogCount += 1
                    totalBacklog += 1
                    if measured { statistics.waitedForPipeline += 1 }
                }
            } else if measured {
                statistics.unsent += 1
            }
            nextSlot += 1
        }
        if slotsExhausted {
            beginDrain()
        } else {
            // Round up: waking a little late is measured; waking early only costs a wake-up.
            let wait = (schedule.time(ofSlot: nextSlot) - now + 999) / 1000
            slotTimer?.start(afterMicroseconds: Int(wait))
        }
    }

    private func sendBacklog(_ benchConnection: BenchConnection, _ connection: Connection, now: UInt64) {
        guard let schedule else { return }
        while benchConnection.backlogCount > 0 && benchConnection.inFlight.count < pipeline {
            let slot = benchConnection.backlogFirstSlot
            benchConnection.backlogFirstSlot += UInt64(schedule.connectionCount)
            benchConnection.backlogCount -= 1
            totalBacklog -= 1
            let time = schedule.time(ofSlot: slot)
            if benchConnection.inFlight.isEmpty { benchConnection.lastProgress = now }
            sendScheduled(slotTime: time, measured: time >= measureStart, on: benchConnection, connection, now: now)
        }
    }

    @inline(__always)
    private func sendScheduled(slotTime: UInt64, measured: Bool, on benchConnection: BenchConnection,
                               _ connection: Connection, now: UInt64) {
        if measured && now &- slotTime > WorkerStatistics.lateThreshold { statistics.late += 1 }
        issue(on: benchConnection, connection, origin: slotTime, measured: measured, now: now)
    }

    // MARK: Encoding

    /// Appends the next request of the mix to the connection's output.
    @inline(__always)
    private func issue(on benchConnection: BenchConnection, _ connection: Connection, origin: UInt64, measured: Bool, now: UInt64) {
        let isSet = configuration.ratio.isSet(at: ratioPosition)
        ratioPosition += 1
        if ratioPosition == configuration.ratio.cycleLength { ratioPosition = 0 }
        let before = connection.output.readableCount
        if isSet {
            encodeSet(key: sampler.next(), on: benchConnection, connection, origin: origin, measured: measured, fill: false)
        } else {
            encodeGet(on: benchConnection, connection, origin: origin, measured: measured)
        }
        if measured { statistics.bytesSent &+= UInt64(connection.output.readableCount - before) }
    }

    @inline(__always)
    private func encodeSet(key index: UInt64, on benchConnection: BenchConnection, _ connection: Connection,
                           origin: UInt64, measured: Bool, fill: Bool) {
        let key = keyScratch.format(index)
        let value = values.value(forKey: index)
        if isMeta {
            RequestEncoder.appendMetaSet(key, value: value, flags: "", to: &connection.output)
        } else {
            RequestEncoder.appendStorage(.set, key: key, value: value, to: &connection.output)
        }
        benchConnection.inFlight.push(PendingRequest(origin: origin, kind: isMeta ? .metaSet : .textSet,
                                                     measured: measured, fill: fill, keys: 1, hits: 0))
        outstanding += 1
    }

    @inline(__always)
    private func encodeGet(on benchConnection: BenchConnection, _ connection: Connection, origin: UInt64, measured: Bool) {
        let kind: RequestKind
        if isMeta {
            if multiget == 1 {
                RequestEncoder.appendMeta(.metaGet, key: keyScratch.format(sampler.next()),
                                          flags: verifying ? "k v" : "v", to: &connection.output)
                kind = .metaGet
            } else {
                for _ in 0..<multiget {
                    RequestEncoder.appendMeta(.metaGet, key: keyScratch.format(sampler.next()),
                                              flags: verifying ? "k v q" : "v q", to: &connection.output)
                }
                RequestEncoder.appendMetaNoop(to: &connection.output)
                kind = .metaMultiGet
            }
        } else if multiget == 1 {
            RequestEncoder.appendGet(keyScratch.format(sampler.next()), to: &connection.output)
            kind = .textGet
        } else {
            RequestEncoder.appendRetrievalStart(.get, to: &connection.output)
            for _ in 0..<multiget { RequestEncoder.appendKey(keyScratch.format(sampler.next()), to: &connection.output) }
            RequestEncoder.appendLineEnd(to: &connection.output)
            kind = .textGet
        }
        benchConnection.inFlight.push(PendingRequest(origin: origin, kind: kind, measured: measured, fill: false,
                                                     keys: UInt16(multiget), hits: 0))
        outstanding += 1
    }

    // MARK: Completion (called by BenchConnection for the front request)

    @inline(__always)
    func complete(_ benchConnection: BenchConnection, now: UInt64) {
        let request = benchConnection.inFlight.popFront()
        outstanding -= 1
        if request.fill {
            statistics.fillStored += 1
            return
        }
        let latency = now &- request.origin
        statistics.progressCompleted &+= 1
        statistics.progressLatencySum &+= latency
        guard request.measured else { return }
        statistics.lastCompletion = now
        switch request.kind {
        case .textSet, .metaSet:
            statistics.sets += 1
            statistics.setLatency.record(latency)
        default:
            statistics.gets += 1
            statistics.getKeys += UInt64(request.keys)
            statistics.hits += UInt64(request.hits)
            statistics.misses += UInt64(request.keys - min(request.hits, request.keys))
            statistics.getLatency.record(latency)
        }
    }

    /// The server declined a set (NOT_STORED, NS, ...): the request is done but not counted as an op.
    func notStored(_ benchConnection: BenchConnection, now: UInt64) {
        let request = benchConnection.inFlight.popFront()
        outstanding -= 1
        if request.fill { statistics.fillFailed += 1 } else if request.measured { statistics.notStored += 1 }
    }

    /// ERROR / CLIENT_ERROR / SERVER_ERROR ended the request.
    func failed(_ benchConnection: BenchConnection, _ response: Response, _ unit: UnsafeRawBufferPointer, now: UInt64) {
        let request = benchConnection.inFlight.popFront()
        outstanding -= 1
        if request.fill { statistics.fillFailed += 1 }
        countServerError(response, unit)
    }

    func countServerError(_ response: Response, _ unit: UnsafeRawBufferPointer) {
        statistics.serverErrors += 1
        if statistics.firstServerError == nil {
            statistics.firstServerError = String(decoding: unit.slice(response.line), as: UTF8.self)
        }
    }

    func verify(key: UnsafeRawBufferPointer, data: UnsafeRawBufferPointer) {
        guard let index = keyLayout.index(ofKey: key) else {
            return verifyFailed("a value came back under '\(String(decoding: key, as: UTF8.self))', not a key of this run")
        }
        if !values.matches(data, key: index) {
            verifyFailed("key '\(keyLayout.key(index))': got \(counted(data.count, "byte")) that differ from the \(values.length(forKey: index)) written")
        }
    }

    private func verifyFailed(_ message: String) {
        statistics.verifyFailures += 1
        if statistics.firstVerifyFailure == nil { statistics.firstVerifyFailure = message }
    }

    func protocolError(on benchConnection: BenchConnection, reason: String, unit: UnsafeRawBufferPointer, length: Int) {
        statistics.protocolErrors += 1
        if mode == .setup {
            // The first line only, cut at the byte level ("\r\n" is one Character in Swift).
            let line = unit.prefix(min(length, 80)).prefix { $0 != 0x0D && $0 != 0x0A }
            let text = String(decoding: line, as: UTF8.self)
            fail("\(configuration.servers[benchConnection.serverIndex]) answered the probe with '\(text)'; is it a memcached server\(isMeta ? " with the meta protocol" : "")?")
        }
        benchConnection.close(.protocolError)
    }

    func connectionClosed(_ benchConnection: BenchConnection, reason: BenchConnection.ClosingReason?) {
        openConnections -= 1
        let lost = benchConnection.inFlight.removeAll()
        outstanding -= lost.total
        totalBacklog -= benchConnection.backlogCount
        if reason != .endOfRun {
            statistics.unfinished += UInt64(lost.measured)
            statistics.unsent += UInt64(benchConnection.backlogCount)
        }
        benchConnection.backlogCount = 0
        if reason == nil {
            statistics.connectionErrors += 1
            if mode == .setup {
                fail("\(configuration.servers[benchConnection.serverIndex]) closed the connection before answering the probe")
            }
        }
        if mode == .filling && benchConnection.fillEnd > 0 {
            statistics.fillFailed += benchConnection.fillEnd - benchConnection.fillNext
            benchConnection.fillEnd = 0
            fillShareDone()
        }
        if openConnections == 0 && (mode == .running || mode == .draining) { return finish() }
        // The lost requests may have been the last ones the drain waited for.
        if mode == .draining && outstanding == 0 && totalBacklog == 0 { finish() }
    }

    // MARK: Ending

    private func beginDrain() {
        guard mode == .running else { return }
        mode = .draining
        slotsExhausted = true
        slotTimer?.stop()
        // A duration run ends now: what has not been sent by the end is not sent.
        if endTime != .max {
            for benchConnection in connections where benchConnection.backlogCount > 0 {
                statistics.unsent += UInt64(benchConnection.backlogCount)
                totalBacklog -= benchConnection.backlogCount
                benchConnection.backlogCount = 0
            }
        }
        if outstanding == 0 && totalBacklog == 0 { finish() }
    }

    private func houseKeep() {
        let now = MonotonicClock.now()
        if mode == .running && now >= endTime {
            if schedule != nil { dispatchDueSlots() } else { beginDrain() }
        }
        let timeout = MonotonicClock.nanoseconds(configuration.timeout)
        for benchConnection in connections where benchConnection.isOpen && !benchConnection.inFlight.isEmpty {
            if now &- benchConnection.lastProgress > timeout {
                statistics.timeouts += 1
                if mode == .setup {
                    fail("\(configuration.servers[benchConnection.serverIndex]) did not answer the probe within \(configuration.timeout) s")
                }
                benchConnection.close(.timeout)
            }
        }
        progress.publish(statistics)
    }

    /// Main thread asked to stop early (Ctrl-C) or setup failed: end now.
    func abort() {
        for benchConnection in connections {
            let lost = benchConnection.inFlight.removeAll()
            outstanding -= lost.total
            statistics.unfinished += UInt64(lost.measured)
        }
        finish()
    }

    /// Closes everything and stops the loop; the thread then returns.
    func finish() {
        guard mode != .done else { return }
        let wasMeasuring = measuring
        mode = .done
        if wasMeasuring { statistics.cpu = CPUTime.currentThread() - cpuAtMeasureStart }
        slotTimer?.stop()
        slotTimer = nil
        housekeeping?.stop()
        housekeeping = nil
        for benchConnection in connections { benchConnection.close(.endOfRun) }
        progress.publish(statistics)
        if currentPhase != .failed { phase.store(Phase.finished.rawValue, ordering: .releasing) }
        loop.stop()
    }
}
