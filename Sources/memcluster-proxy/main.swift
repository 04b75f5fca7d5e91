import ArgumentParser
import Glibc
import CacheProxy
import Logging

/// The program: flags -> configuration -> ProxyServer.
struct ProxyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "memcluster-proxy",
        abstract: "A memcached-protocol proxy: shards keys over cache nodes by ketama, keeps replicas, and fails over.",
        discussion: """
        Clients connect to the proxy as if it were one memcached. Give the nodes with
        --node (repeatable) or in a YAML file with --config (see examples/proxy.yaml for
        every option and its default). Flags override the file. SIGHUP, or POST /reload on
        the metrics address, reloads the file without dropping client connections.
        """
    )

    @Option(name: .long, help: "YAML configuration file.")
    var config: String?

    @Option(name: .long, help: "Address to listen on, host:port (default 127.0.0.1:22121).")
    var listen: String?

    @Option(name: .long, help: "A cache node, host:port[:weight] [name] (repeatable; replaces the file's nodes).")
    var node: [String] = []

    @Option(name: .long, help: "Copies of each key (default 2 with 2 or more nodes).")
    var replicas: Int?

    @Option(name: .long, help: "Worker threads (default 2).")
    var threads: Int?

    @Option(name: .long, help: "Key placement: ketama (libmemcached KETAMA_WEIGHTED, default), twemproxy, ketama_classic.")
    var hash: String?

    @Option(name: .long, help: "Serve Prometheus /metrics and POST /reload on host:port, or on 127.0.0.1 given only a port.")
    var metrics: String?

    @Option(name: .long, help: "File holding the bearer token POST /reload requires (replaces the file's admin_token).")
    var adminTokenFile: String?

    @Flag(name: .long, help: "Check the configuration, print it, and exit.")
    var checkConfig = false

    @Option(name: .customLong("from-nutcracker"), help: ArgumentHelp(
        "Print the memcluster-proxy configuration of a twemproxy (nutcracker) file, pool by pool, and exit.",
        valueName: "nutcracker.yml"))
    var fromNutcracker: String?

    func run() throws {
        if let fromNutcracker { return try printConversion(of: fromNutcracker) }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .info
            return handler
        }
        var overrides = ProxyOverrides()
        overrides.listen = listen
        overrides.nodes = node
        overrides.replicas = replicas
        overrides.threads = threads
        overrides.hash = hash
        overrides.metrics = metrics
        overrides.adminTokenFile = adminTokenFile
        let path = config
        // A configuration error names its file and line (and prints no usage text).
        let configuration = try overrides.load(path: path)
        if checkConfig {
            print("configuration OK: \(configuration.nodes.count) nodes, replicas \(configuration.effectiveReplicas), listen \(configuration.listen)")
            return
        }
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

ProxyCommand.main()
