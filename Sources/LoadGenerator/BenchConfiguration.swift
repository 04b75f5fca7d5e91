import EventLoop

/// Everything a run needs, validated. Built from the command line by
/// `BenchCommand`, or directly by tests and other tools.
public struct BenchConfiguration: Sendable {
    public var servers: [ServerAddress] = [ServerAddress(host: "127.0.0.1", port: 11211)]
    public var threads = 1
    public var connectionsPerThread = 50
    public var pipeline = 1
    /// Total requests per second for an open-loop run; nil: closed loop.
    public var rate: Double?
    public var bound: RunBound = .duration(seconds: 10)
    public var warmup: Double = 0
    public var keyCount: UInt64 = 100_000
    public var keyPrefix = "key:"
    public var keySize = 32
    public var keyPattern: KeyPattern = .uniform
    public var zipfExponent = 0.99
    public var valueSizes: ValueSizeRange
    public var ratio: OperationRatio
    public var multiget = 1
    public var wireProtocol: WireProtocol = .text
    public var fill = false
    public var verify = false
    /// A connection with requests out that hears nothing for this long is counted as
    /// a timeout and closed.
    public var timeout: Double = 5
    /// `--tls-ca`: connect over TLS, the servers' certificates checked against this CA.
    public var tls: TLSClientSettings?
    public var seed: UInt64 = 1

    public static let maximumThreads = 256
    public static let maximumConnections = 10_000
    public static let maximumPipeline = 4096
    public static let maximumMultiget = 1000
    /// Requests kept in flight per connection while filling.
    public static let fillPipeline = 64

    public init() {
        // Safe because these literals are valid.
        valueSizes = try! ValueSizeRange(minimum: 100, maximum: 100)
        ratio = try! OperationRatio(sets: 1, gets: 9)
    }

    public var totalConnections: Int { threads * connectionsPerThread }

    /// Checks every option and combination; the message names the options involved.
    public func validate() throws(ConfigurationError) {
        guard !servers.isEmpty else { throw ConfigurationError("give at least one --server") }
        guard (1...BenchConfiguration.maximumThreads).contains(threads) else {
            throw ConfigurationError("--threads must be 1-\(BenchConfiguration.maximumThreads)")
        }
        guard (1...BenchConfiguration.maximumConnections).contains(connectionsPerThread) else {
            throw ConfigurationError("--connections must be 1-\(BenchConfiguration.maximumConnections) per thread")
        }
        guard totalConnections <= BenchConfiguration.maximumConnections else {
            throw ConfigurationError("--threads x --connections = \(totalConnections) exceeds \(BenchConfiguration.maximumConnections) connections")
        }
        guard totalConnections >= servers.count else {
            throw ConfigurationError("--threads x --connections = \(totalConnections) is fewer than the \(servers.count) servers; each server needs a connection")
        }
        guard (1...BenchConfiguration.maximumPipeline).contains(pipeline) else {
            throw ConfigurationError("--pipeline must be 1-\(BenchConfiguration.maximumPipeline)")
        }
        if let rate {
            guard rate.isFinite, rate > 0 else { throw ConfigurationError("--rate must be a positive number of requests per second") }
            guard rate <= 100_000_000 else { throw ConfigurationError("--rate \(rate) is beyond any server; at most 100000000") }
        }
        switch bound {
        case .duration(let seconds):
            guard seconds.isFinite, seconds > 0, seconds <= 86_400 else {
                throw ConfigurationError("--duration must be more than 0 and at most 86400 seconds")
            }
        case .requests(let count):
            guard count > 0 else { throw ConfigurationError("--requests must be at least 1") }
        }
        guard warmup.isFinite, warmup >= 0, warmup <= 3600 else {
            throw ConfigurationError("--warmup must be 0-3600 seconds")
        }
        _ = try KeyLayout(prefix: keyPrefix, keySize: keySize, keyCount: keyCount)
        if keyPattern == .zipf {
            guard keyCount <= 100_000_000 else {
                throw ConfigurationError("--key-pattern zipf supports at most 100000000 keys (its table takes 8 bytes per key)")
            }
            guard zipfExponent.isFinite, zipfExponent > 0, zipfExponent <= 10 else {
                throw ConfigurationError("--zipf-exponent must be more than 0 and at most 10")
            }
        }
        guard (1...BenchConfiguration.maximumMultiget).contains(multiget) else {
            throw ConfigurationError("--multiget must be 1-\(BenchConfiguration.maximumMultiget) keys per get")
        }
        if multiget > 1 && ratio.gets == 0 {
            throw ConfigurationError("--multiget \(multiget) has no effect with --ratio \(ratio) (no gets)")
        }
        if verify && ratio.gets == 0 {
            throw ConfigurationError("--verify checks get replies, but --ratio \(ratio) sends no gets")
        }
        guard timeout.isFinite, timeout >= 0.01, timeout <= 3600 else {
            throw ConfigurationError("--timeout must be 0.01-3600 seconds")
        }
    }

    public var keyLayout: KeyLayout {
        // Safe because validate() checked the same arguments.
        try! KeyLayout(prefix: keyPrefix, keySize: keySize, keyCount: keyCount)
    }
}
