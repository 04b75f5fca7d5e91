import Glibc
import ArgumentParser
import Logging
import MemcacheProtocol

/// The `memcluster-proxy` command line: flags -> configuration -> ProxyServer.
/// Here rather than in the program's main.swift so the tests can parse flags
/// and read the help text. Help strings are written for an 80-column terminal:
/// ArgumentParser wraps them, so paragraphs are single lines in the source.
public struct ProxyCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "memcluster-proxy",
        abstract: "Shards memcached keys over cache nodes, with replicas and failover.",
        usage: """
            memcluster-proxy --node <host:port> [--node <host:port> ...] [options]
            memcluster-proxy --config <file> [options]
            """,
        discussion: """
            Clients connect to the proxy as if it were one memcached. Name the cache \
            nodes with --node, or in a YAML file given with --config, which may also \
            name them by a DNS name (discovery:); examples/proxy.yaml lists every \
            option with its default. Flags override the file.

            SIGHUP, or POST /reload on the --metrics-listen address, reloads the file \
            without dropping client connections.
            """,
        version: "memcluster-proxy \(MemclusterVersion.release)-proxy"
    )

    @Option(name: .long, help: ArgumentHelp("YAML configuration file.", valueName: "file"))
    var config: String?

    @Option(name: .long, help: ArgumentHelp(
        "Address clients connect to. (default: 127.0.0.1:22121)", valueName: "host:port"))
    var listen: String?

    @Option(name: .long, help: ArgumentHelp(
        "A cache node; repeat for each. host:port:weight and \"host:port name\" set its weight and name. Replaces the file's nodes or discovery.",
        valueName: "host:port"))
    var node: [String] = []

    @Option(name: .long, help: ArgumentHelp(
        "Copies of each key, at most one per node. (default: 2)", valueName: "n"))
    var replicas: Int?

    @Option(name: .long, help: ArgumentHelp("Worker threads. (default: 2)", valueName: "n"))
    var threads: Int?

    @Option(name: .long, help: ArgumentHelp(
        "Key placement: ketama (libmemcached KETAMA_WEIGHTED), twemproxy or ketama_classic. (default: ketama)",
        valueName: "name"))
    var hash: String?

    // `--metrics` is the older name, kept so existing command lines work.
    @Option(name: [.customLong("metrics-listen"), .customLong("metrics")], help: ArgumentHelp(
        "Serve Prometheus GET /metrics and POST /reload on this address; a bare port means 127.0.0.1. --metrics is its older name. (default: none)",
        valueName: "host:port"))
    var metricsListen: String?

    @Option(name: .long, help: ArgumentHelp(
        "File holding the token POST /reload requires; replaces the file's admin_token. (default: none)",
        valueName: "file"))
    var adminTokenFile: String?

    @Option(name: .long, help: ArgumentHelp(
        "How much to log: trace, debug, info, notice, warning, error or critical; replaces the file's log_level. (default: info)",
        valueName: "level"))
    var logLevel: String?

    @Flag(name: .long, help: "Print the configuration in effect, every option as YAML, and exit; on an error, print it and exit 1.")
    var checkConfig = false

    @Option(name: .customLong("from-nutcracker"), help: ArgumentHelp(
        "Print the memcluster-proxy configuration of a twemproxy (nutcracker) file, pool by pool, and exit.",
        valueName: "nutcracker.yml"))
    var fromNutcracker: String?

    public init() {}

    /// The flags as overrides of the configuration file.
    public var overrides: ProxyOverrides {
        var overrides = ProxyOverrides()
        overrides.listen = listen
        overrides.nodes = node
        overrides.replicas = replicas
        overrides.threads = threads
        overrides.hash = hash
        overrides.metrics = metricsListen
        overrides.adminTokenFile = adminTokenFile
        overrides.logLevel = logLevel
        return overrides
    }

    public func run() throws {
        if let fromNutcracker { return try printConversion(of: fromNutcracker) }
        let overrides = self.overrides
        let path = config
        // A configuration error names its file and line (and prints no usage text).
        let configuration = try overrides.load(path: path)
        if checkConfig {
            print("# memcluster-proxy --check-config: the configuration in effect (\(path.map { "file \($0)" } ?? "no file")), flags applied")
            print(ConfigurationFile.render(configuration), terminator: "")
            return
        }
        ProxyLogging.bootstrap(level: configuration.logLevel)
        let server = try ProxyServer(configuration: configuration, loadConfiguration: { try overrides.load(path: path) },
                                     configurationPath: path)
        try server.bind()
        try server.run()
    }
}

extension ProxyCommand {
    /// `--from-nutcracker`: each pool as a YAML document (`---` between them),
    /// a pool that cannot be expressed as a comment with the reasons, also on
    /// standard error; the exit status is 1 when no pool could be converted.
    func printConversion(of path: String) throws {
        let text = try ConfigurationFile.contents(of: path)
        let pools = try NutcrackerConversion.convert(text, path: path)
        var documents: [String] = []
        for pool in pools {
            if let yaml = pool.yaml {
                documents.append(yaml)
            } else {
                let reasons = pool.refusals.map { "#   - \($0)" }.joined(separator: "\n")
                documents.append("# pool \(pool.name) is not converted:\n\(reasons)\n")
                printToStandardError("pool \(pool.name) is not converted: \(pool.refusals.joined(separator: "; "))")
            }
        }
        print(documents.joined(separator: "---\n"), terminator: "")
        if !pools.contains(where: { $0.yaml != nil }) { throw ExitCode(1) }
    }
}

/// One line on standard error; `write(2)` because the C `stderr` global is not
/// concurrency-safe under Swift 6.
private func printToStandardError(_ message: String) {
    var line = message + "\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}
