import ArgumentParser
import EventLoop
import Glibc
import MemcacheProtocol

/// The `memcluster-bench` command line: flags -> `BenchConfiguration` -> run -> report.
public struct BenchCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "memcluster-bench",
        abstract: "A load generator for memcached servers, like memtier_benchmark.",
        discussion: """
            Closed loop by default: every connection keeps --pipeline requests in flight and sends the \
            next as soon as a reply completes. With --rate, an open loop: requests leave at fixed \
            intervals per connection and latency counts from the scheduled send time, so queueing \
            is not hidden (coordinated omission); sends that could not leave on time are reported.

            Keys are <prefix><zero-padded index>, exactly --key-size bytes. Values are derived from \
            the key index (length and content), so --verify can check them and a --fill done by one \
            run serves the next.

            Results cover the measured window (after --warmup). Exit status: 0 on a clean run, 1 on \
            set-up failures or when any error was counted, 64 for bad options.

            Example:
            memcluster-bench --server 127.0.0.1:11211 --fill --duration 10 --json out.json
            """,
        version: "memcluster-bench \(MemclusterVersion.release)")

    @Option(name: .customLong("server"),
            help: ArgumentHelp("Server to load, host:port or [ipv6]:port; repeat for several (connections are spread over them round-robin).",
                               valueName: "host:port"))
    var servers: [String] = ["127.0.0.1:11211"]

    @Option(name: [.customShort("t"), .long], help: ArgumentHelp("Worker threads, each with its own event loop.", valueName: "n"))
    var threads = 1

    @Option(name: [.customShort("c"), .long], help: ArgumentHelp("Connections per thread.", valueName: "n"))
    var connections = 50

    @Option(help: ArgumentHelp("Requests in flight per connection.", valueName: "n"))
    var pipeline = 1

    @Option(help: ArgumentHelp("Total requests per second for an open-loop run. (default: none, closed loop)", valueName: "requests/s"))
    var rate: Double?

    @Option(help: ArgumentHelp("Length of the measured phase, unless --requests is given. (default: 10)", valueName: "seconds"))
    var duration: Double?

    @Option(help: ArgumentHelp("Measured requests to send across all threads, instead of --duration. (default: none)", valueName: "n"))
    var requests: UInt64?

    @Option(help: ArgumentHelp("Run this long before measuring; excluded from the results.", valueName: "seconds"))
    var warmup: Double = 0

    @Option(help: ArgumentHelp("Size of the key space.", valueName: "n"))
    var keys: UInt64 = 100_000

    @Option(help: ArgumentHelp("Text every key starts with.", valueName: "text"))
    var keyPrefix = "key:"

    @Option(help: ArgumentHelp("Key length in bytes; the index is zero-padded to fill it.", valueName: "n"))
    var keySize = 32

    @Option(help: ArgumentHelp("Which keys requests use: uniform, zipf (key 0 hottest) or sequential.", valueName: "pattern"))
    var keyPattern: KeyPattern = .uniform

    @Option(help: ArgumentHelp("Exponent s of --key-pattern zipf: key i is drawn with weight 1/(i+1)^s. (default: 0.99)", valueName: "s"))
    var zipfExponent: Double?

    @Option(help: ArgumentHelp("Value size in bytes, N or MIN-MAX (each key's size is fixed within the range).", valueName: "n|min-max"))
    var valueSize = "100"

    @Option(help: ArgumentHelp("Sets to gets, as memtier: 1:9 is one set per nine gets.", valueName: "sets:gets"))
    var ratio = "1:9"

    @Option(help: ArgumentHelp("Keys per get request (a multi-get).", valueName: "n"))
    var multiget = 1

    @Option(name: .customLong("protocol"), help: ArgumentHelp("text (get, set) or meta (mg, ms; a multi-get is quiet mgs then mn).", valueName: "protocol"))
    var wireProtocol: WireProtocol = .text

    @Flag(help: "Before measuring, set every key once on every server (pipelined) so gets hit.")
    var fill = false

    @Flag(help: "Check that every value returned is the one this tool writes for its key.")
    var verify = false

    @Option(help: ArgumentHelp("A connection with requests out that receives nothing for this long counts a timeout and is closed; also the connect limit.", valueName: "seconds"))
    var timeout: Double = 5

    @Option(name: .customLong("tls-ca"), help: ArgumentHelp("Connect over TLS; the servers' certificates must chain to this CA (PEM). (default: plain text)", valueName: "file"))
    var tlsCA: String?

    @Option(name: .customLong("tls-cert"), help: ArgumentHelp("With --tls-ca: a client certificate (PEM), for servers that require one. (default: none)", valueName: "file"))
    var tlsCert: String?

    @Option(name: .customLong("tls-key"), help: ArgumentHelp("With --tls-cert: its private key (PEM), if not in the certificate file. (default: none)", valueName: "file"))
    var tlsKey: String?

    @Option(help: ArgumentHelp("Seed for key choices; the same seed repeats a run's key sequence. (default: random, shown in the report)", valueName: "n"))
    var seed: UInt64?

    @Flag(name: .customLong("no-progress"), help: "No live progress line (shown on stderr once a second only when stderr is a terminal).")
    var noProgress = false

    @Option(help: ArgumentHelp("Also write the report as JSON to this file, or with '-' to stdout (the table then goes to stderr). (default: none)", valueName: "file"))
    var json: String?

    public init() {}

    /// The validated configuration these flags describe.
    public func makeConfiguration() throws(ConfigurationError) -> BenchConfiguration {
        var configuration = BenchConfiguration()
        var parsedServers: [ServerAddress] = []
        for server in servers { parsedServers.append(try ServerAddress(parsing: server)) }
        configuration.servers = parsedServers
        configuration.threads = threads
        configuration.connectionsPerThread = connections
        configuration.pipeline = pipeline
        configuration.rate = rate
        if duration != nil && requests != nil {
            throw ConfigurationError("--duration and --requests both bound the run; give one of them")
        }
        if let requests {
            configuration.bound = .requests(requests)
        } else {
            configuration.bound = .duration(seconds: duration ?? 10)
        }
        configuration.warmup = warmup
        configuration.keyCount = keys
        configuration.keyPrefix = keyPrefix
        configuration.keySize = keySize
        configuration.keyPattern = keyPattern
        if let zipfExponent {
            guard keyPattern == .zipf else {
                throw ConfigurationError("--zipf-exponent applies only to --key-pattern zipf")
            }
            configuration.zipfExponent = zipfExponent
        }
        configuration.valueSizes = try ValueSizeRange(parsing: valueSize)
        configuration.ratio = try OperationRatio(parsing: ratio)
        configuration.multiget = multiget
        configuration.wireProtocol = wireProtocol
        configuration.fill = fill
        configuration.verify = verify
        configuration.timeout = timeout
        if let tlsCA {
            configuration.tls = TLSClientSettings(caCertificate: tlsCA, certificate: tlsCert, privateKey: tlsKey)
        } else if tlsCert != nil || tlsKey != nil {
            throw ConfigurationError("--tls-cert and --tls-key need --tls-ca")
        }
        configuration.seed = seed ?? UInt64.random(in: 1...UInt64(UInt32.max))
        try configuration.validate()
        return configuration
    }

    public func validate() throws {
        do {
            _ = try makeConfiguration()
        } catch {
            throw ValidationError(error.message)
        }
    }

    public func run() throws {
        let configuration: BenchConfiguration
        do { configuration = try makeConfiguration() } catch { throw ValidationError(error.message) }
        SignalWatcher.ignoreBrokenPipes()
        InterruptFlag.install()
        let generator = try LoadGenerator(configuration: configuration)
        let showProgress = !noProgress && isatty(STDERR_FILENO) != 0
        if showProgress {
            generator.progressHandler = { line in StandardStreams.writeError("\r\u{1B}[K" + line) }
        }
        let report: BenchReport
        do {
            report = try generator.run()
        } catch {
            if showProgress { StandardStreams.writeError("\r\u{1B}[K") }
            StandardStreams.writeError("memcluster-bench: \(error)\n")
            throw ExitCode.failure
        }
        if showProgress { StandardStreams.writeError("\r\u{1B}[K") }
        let table = ReportFormatter.table(report)
        if json == "-" {
            StandardStreams.writeError(table)
            StandardStreams.writeOutput(try ReportFormatter.json(report) + "\n")
        } else {
            StandardStreams.writeOutput(table)
            if let json {
                try ReportFormatter.writeJSON(report, to: json)
            }
        }
        if report.errors.total > 0 { throw ExitCode.failure }
    }
}

extension KeyPattern: ExpressibleByArgument {}
extension WireProtocol: ExpressibleByArgument {}
