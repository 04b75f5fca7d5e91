import Synchronization

/// One worker thread's counts and histograms. Written only on that thread; read by
/// the main thread after the thread is joined (`merge`).
final class WorkerStatistics {
    // Measured requests that completed.
    var gets: UInt64 = 0
    var getKeys: UInt64 = 0
    var hits: UInt64 = 0
    var misses: UInt64 = 0
    var sets: UInt64 = 0
    /// NOT_STORED / EXISTS / NOT_FOUND, or NS / EX / NF: the server declined a set.
    var notStored: UInt64 = 0
    /// ERROR, CLIENT_ERROR or SERVER_ERROR replies.
    var serverErrors: UInt64 = 0
    /// Replies that do not fit the request (the stream cannot be followed any more).
    var protocolErrors: UInt64 = 0
    /// Connections lost other than by a timeout or a protocol error.
    var connectionErrors: UInt64 = 0
    var timeouts: UInt64 = 0
    var verifyFailures: UInt64 = 0
    var firstVerifyFailure: String?
    var firstServerError: String?
    /// Measured requests sent that never completed (connection lost, or the run ended).
    var unfinished: UInt64 = 0

    var bytesSent: UInt64 = 0
    var bytesReceived: UInt64 = 0
    var getLatency = LatencyHistogram()
    var setLatency = LatencyHistogram()
    /// Every completed request and its latency, warm-up included: the live progress
    /// line's rate and average (the report uses the measured figures only).
    var progressCompleted: UInt64 = 0
    var progressLatencySum: UInt64 = 0
    var lastCompletion: UInt64 = 0

    // Open loop.
    var scheduled: UInt64 = 0
    /// Sent later than `lateThreshold` after the scheduled time.
    var late: UInt64 = 0
    /// Had to wait because the connection already had `--pipeline` requests out.
    var waitedForPipeline: UInt64 = 0
    /// Scheduled but never sent (run ended first, or the connection was gone).
    var unsent: UInt64 = 0
    /// How long after its scheduled time the generator got to each slot.
    var dispatchLag = LatencyHistogram()

    // --fill.
    var fillStored: UInt64 = 0
    var fillFailed: UInt64 = 0

    var cpu = CPUTime()

    /// Sends this much after their scheduled time count as late.
    static let lateThreshold: UInt64 = 1_000_000

    var completed: UInt64 { gets + sets }
    var errors: UInt64 { serverErrors + protocolErrors + connectionErrors + timeouts + verifyFailures }
}

/// Figures a worker publishes every 100 ms for the main thread's progress line.
final class PublishedProgress: Sendable {
    let completed = Atomic<UInt64>(0)
    let errors = Atomic<UInt64>(0)
    let latencySum = Atomic<UInt64>(0)
    let filled = Atomic<UInt64>(0)

    func publish(_ statistics: WorkerStatistics) {
        completed.store(statistics.progressCompleted, ordering: .relaxed)
        errors.store(statistics.errors, ordering: .relaxed)
        latencySum.store(statistics.progressLatencySum, ordering: .relaxed)
        filled.store(statistics.fillStored + statistics.fillFailed, ordering: .relaxed)
    }
}
