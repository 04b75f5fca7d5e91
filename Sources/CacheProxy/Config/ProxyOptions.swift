import Logging

/// Command-line settings that override the configuration file, so a one-liner
/// works without one: `memcluster-proxy --listen 127.0.0.1:22121 --node a:11211 --node b:11211`.
public struct ProxyOverrides: Sendable {
    public var listen: String?
    public var nodes: [String] = []
    public var replicas: Int?
    public var threads: Int?
    public var hash: String?
    /// `--metrics-listen` (or its older name `--metrics`).
    public var metrics: String?
    /// `--admin-token-file`: replaces the file's `admin_token` or `admin_token_file`.
    /// (There is no flag taking the token itself: every local user can read a
    /// process's command line.)
    public var adminTokenFile: String?
    /// `--log-level`: replaces the file's `log_level`.
    public var logLevel: String?

    public init() {}

    /// Applies the overrides on top of `base`; throws with a message naming the flag.
    public func apply(to base: ProxyConfiguration) throws(ConfigurationError) -> ProxyConfiguration {
        var configuration = base
        if let listen {
            guard let address = HostPort(parsing: listen) else { throw ConfigurationError("--listen: expected host:port, found '\(listen)'") }
            configuration.listen = address
        }
        if !nodes.isEmpty {
            // --node replaces the file's nodes: or discovery:.
            configuration.discovery = nil
            configuration.nodes = try nodes.map { text throws(ConfigurationError) in
                guard let node = RingNode(twemproxyStyle: text) else {
                    throw ConfigurationError("--node: expected host:port[:weight] [name], found '\(text)'")
                }
                return node
            }
        }
        if let replicas {
            guard (1...8).contains(replicas) else { throw ConfigurationError("--replicas: expected 1 to 8") }
            configuration.replicas = replicas
        }
        if let threads {
            guard (1...64).contains(threads) else { throw ConfigurationError("--threads: expected 1 to 64") }
            configuration.threads = threads
        }
        if let hash {
            switch hash {
            case "ketama": configuration.hashMode = .libmemcachedWeighted
            case "twemproxy": configuration.hashMode = .twemproxy
            case "ketama_classic": configuration.hashMode = .libmemcachedClassic
            default: throw ConfigurationError("--hash: expected ketama, twemproxy or ketama_classic")
            }
        }
        if let metrics {
            guard let address = HostPort(adminAddress: metrics) else {
                throw ConfigurationError("--metrics-listen: expected host:port or a port (127.0.0.1)")
            }
            configuration.metricsListen = address
        }
        if let logLevel {
            guard let level = Logger.Level(rawValue: logLevel) else {
                throw ConfigurationError("--log-level: expected one of \(ProxyConfiguration.logLevelNames)")
            }
            configuration.logLevel = level
        }
        if let adminTokenFile {
            configuration.adminToken = nil
            configuration.adminTokenFile = adminTokenFile
        }
        if let file = configuration.adminTokenFile {
            configuration.adminToken = try AdminToken.read(file: file)
        }
        if var credentials = configuration.nodeAuth {
            credentials.password = try NodeCredentials.readPassword(credentials.passwordFile)
            configuration.nodeAuth = credentials
        }
        if configuration.adminTokenProtectsMetrics && configuration.adminToken == nil {
            throw ConfigurationError("admin_token_protects_metrics: needs admin_token or admin_token_file")
        }
        if var discovery = configuration.discovery {
            // The server is found now, so a reload follows a changed resolv.conf.
            discovery.server = try discovery.resolvedServer()
            configuration.discovery = discovery
        } else if configuration.nodes.isEmpty {
            throw ConfigurationError("no nodes: give --node host:port (repeatable) or a --config file with a nodes: or discovery: section")
        }
        try ProxyServer.refuseDuplicateAddresses(configuration.nodes)
        return configuration
    }

    /// Reads `path` (when given) and applies the overrides: what runs at start and on every reload.
    public func load(path: String?) throws(ConfigurationError) -> ProxyConfiguration {
        guard let path else { return try apply(to: ProxyConfiguration()) }
        let bytes = try readFile(path)
        var base = try ConfigurationFile.parse(String(decoding: bytes, as: UTF8.self), path: path)
        // Flags name nodes only when no file does.
        if !nodes.isEmpty && !base.nodes.isEmpty { base.nodes = [] }
        // A token file named in the configuration lives next to it.
        if let file = base.adminTokenFile, !file.hasPrefix("/"), let slash = path.lastIndex(of: "/") {
            base.adminTokenFile = String(path[...slash]) + file
        }
        return try apply(to: base)
    }
}
