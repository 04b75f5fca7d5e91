/// The result of one run: what `--json` writes (keys in snake_case) and what the
/// human table shows. Counts cover the measured window only (after the warm-up):
/// requests issued (open loop: scheduled) inside it and completed.
public struct BenchReport: Codable, Sendable {
    public var tool = "memcluster-bench"
    public var config: ReportConfiguration
    public var servers: [ServerReport]
    public var fill: FillReport?
    /// From the start of the measured window to the last completion.
    public var durationSeconds: Double
    public var warmupSeconds: Double
    /// Completed requests (a multi-get is one request).
    public var ops: UInt64
    public var opsPerSecond: Double
    public var gets: UInt64
    public var sets: UInt64
    /// Keys asked for by the gets (gets x --multiget).
    public var getKeys: UInt64
    public var hits: UInt64
    public var misses: UInt64
    /// hits / get_keys; 0 without gets.
    public var hitRatio: Double
    /// Sets the server declined (NOT_STORED, EXISTS, NOT_FOUND, NS, EX, NF).
    public var notStored: UInt64
    public var errors: ErrorReport
    public var latencyUs: LatencyReport
    public var bytes: ByteReport
    public var clientCpu: CPUReport
    public var openLoop: OpenLoopReport?
    /// Ctrl-C ended the run early.
    public var interrupted: Bool

    public struct ReportConfiguration: Codable, Sendable {
        public var servers: [String]
        public var threads: Int
        public var connectionsPerThread: Int
        public var pipeline: Int
        public var rate: Double?
        public var durationSeconds: Double?
        public var requests: UInt64?
        public var warmupSeconds: Double
        public var keys: UInt64
        public var keyPrefix: String
        public var keySize: Int
        public var keyPattern: KeyPattern
        public var zipfExponent: Double?
        public var valueSize: ValueSizeRange
        public var ratio: String
        public var multiget: Int
        public var `protocol`: WireProtocol
        public var fill: Bool
        public var verify: Bool
        public var timeoutSeconds: Double
        public var seed: UInt64
    }

    public struct ServerReport: Codable, Sendable {
        public var address: String
        /// From the `version` probe.
        public var version: String?
    }

    public struct FillReport: Codable, Sendable {
        public var keys: UInt64
        /// Sets sent (keys x servers).
        public var sets: UInt64
        public var stored: UInt64
        public var failed: UInt64
        public var seconds: Double
    }

    public struct ErrorReport: Codable, Sendable {
        /// Sum of all the kinds below.
        public var total: UInt64
        /// ERROR, CLIENT_ERROR or SERVER_ERROR replies.
        public var serverErrors: UInt64
        /// Replies that did not fit the request or did not parse (the connection is closed).
        public var protocolErrors: UInt64
        /// Connections lost during the run.
        public var connectionErrors: UInt64
        /// Connections that had requests out and heard nothing for --timeout (closed).
        public var timeouts: UInt64
        /// --verify: values that differ from what this tool writes.
        public var verifyFailures: UInt64
        /// Measured requests sent that never completed (lost with a connection).
        public var unfinishedRequests: UInt64
        public var firstServerError: String?
        public var firstVerifyFailure: String?
    }

    public struct LatencyReport: Codable, Sendable {
        public var get: LatencySummary
        public var set: LatencySummary
        public var all: LatencySummary
        /// Every request's latency as a percentile curve (`LatencyHistogram.curve`),
        /// for plots; absent when nothing completed.
        public var curve: [PercentilePoint]? = nil
    }

    public struct ByteReport: Codable, Sendable {
        public var sent: UInt64
        public var received: UInt64
    }

    public struct CPUReport: Codable, Sendable {
        /// Worker threads over the measured window (getrusage RUSAGE_THREAD).
        public var userSeconds: Double
        public var systemSeconds: Double
        /// (user + system) / ops, in microseconds.
        public var usPerRequest: Double
        /// The whole process from start to exit, set-up and fill included (RUSAGE_SELF).
        public var processTotalSeconds: Double
    }

    public struct OpenLoopReport: Codable, Sendable {
        public var targetRate: Double
        /// Requests due inside the measured window.
        public var scheduled: UInt64
        /// Sent more than `late_threshold_us` after their scheduled time (any cause).
        public var late: UInt64
        public var lateThresholdUs: Double
        /// Found their connection with --pipeline requests out and waited for a reply
        /// (the server's slowness).
        public var waitedForPipeline: UInt64
        /// Due but never sent: the run ended first or their connection was gone.
        public var unsent: UInt64
        /// How late the generator itself got to each scheduled request (its timer and
        /// CPU), before any wait for the pipeline.
        public var dispatchLagUs: LatencySummary
        /// The generator could not keep its own schedule (dispatch lag p99 over
        /// `late_threshold_us`): latencies include its delay, so they overstate the
        /// server's. Give it a core of its own or a lower --rate.
        public var generatorBehind: Bool
    }
}

extension BenchReport.ReportConfiguration {
    init(_ configuration: BenchConfiguration) {
        servers = configuration.servers.map(\.description)
        threads = configuration.threads
        connectionsPerThread = configuration.connectionsPerThread
        pipeline = configuration.pipeline
        rate = configuration.rate
        switch configuration.bound {
        case .duration(let seconds): durationSeconds = seconds; requests = nil
        case .requests(let count): durationSeconds = nil; requests = count
        }
        warmupSeconds = configuration.warmup
        keys = configuration.keyCount
        keyPrefix = configuration.keyPrefix
        keySize = configuration.keySize
        keyPattern = configuration.keyPattern
        zipfExponent = configuration.keyPattern == .zipf ? configuration.zipfExponent : nil
        valueSize = configuration.valueSizes
        ratio = configuration.ratio.description
        multiget = configuration.multiget
        self.protocol = configuration.wireProtocol
        fill = configuration.fill
        verify = configuration.verify
        timeoutSeconds = configuration.timeout
        seed = configuration.seed
    }
}
