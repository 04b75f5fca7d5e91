import EventLoop
import Logging
import Yams

/// A configuration problem, naming the file and line so an operator can fix it.
public struct ConfigurationError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Reads the proxy's YAML file into a `ProxyConfiguration`. Strict: an unknown
/// key or a value of the wrong kind is refused with its line, so a typo cannot
/// silently fall back to a default.
///
/// ```yaml
/// listen: 127.0.0.1:22121
/// replicas: 2
/// nodes:
///   - 127.0.0.1:22122            # twemproxy style: host:port[:weight] [name]
///   - address: 127.0.0.1:22123
///     weight: 2
///     name: b
/// # or, instead of nodes:
/// discovery:
///   name: memcache.default.svc.cluster.local   # or srv: _memcache._tcp.<name>
///   port: 11211
/// ```
public enum ConfigurationFile {
    /// The text of the file at `path`.
    public static func contents(of path: String) throws(ConfigurationError) -> String {
        String(decoding: try readFile(path), as: UTF8.self)
    }

    public static func parse(_ text: String, path: String = "<config>") throws(ConfigurationError) -> ProxyConfiguration {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw ConfigurationError("\(path):\(describe(error))")
        } catch {
            throw ConfigurationError("\(path): \(error)")
        }
        guard let root, let mapping = root.mapping else {
            throw ConfigurationError("\(path):1: the configuration must be a mapping of options (listen:, nodes:, ...)")
        }
        var reader = Reader(path: path)
        return try reader.configuration(mapping)
    }

    private static func describe(_ error: YamlError) -> String {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _):
            return "\(mark.line):\(mark.column): \(problem)"
        default:
            return " \(error)"
        }
    }

    private struct Reader {
        let path: String

        func fail(_ node: Node, _ message: String) -> ConfigurationError {
            ConfigurationError("\(path):\(node.mark?.line ?? 0): \(message)")
        }

        func string(_ node: Node, _ name: String) throws(ConfigurationError) -> String {
            guard let scalar = node.scalar else { throw fail(node, "\(name): expected a single value") }
            return scalar.string
        }

        func integer(_ node: Node, _ name: String, minimum: Int = 0, maximum: Int = Int.max) throws(ConfigurationError) -> Int {
            let text = try string(node, name)
            guard let value = Int(text), value >= minimum, value <= maximum else {
                throw fail(node, "\(name): expected an integer from \(minimum) to \(maximum), found '\(text)'")
            }
            return value
        }

        func boolean(_ node: Node, _ name: String) throws(ConfigurationError) -> Bool {
            switch try string(node, name).lowercased() {
            case "true", "yes", "on": return true
            case "false", "no", "off": return false
            case let other: throw fail(node, "\(name): expected true or false, found '\(other)'")
            }
        }

        func hostPort(_ node: Node, _ name: String) throws(ConfigurationError) -> HostPort {
            let text = try string(node, name)
            guard let value = HostPort(parsing: text) else { throw fail(node, "\(name): expected host:port, found '\(text)'") }
            return value
        }

        func size(_ node: Node, _ name: String) throws(ConfigurationError) -> Int {
            let text = try string(node, name)
            var digits = Substring(text)
            var unit = 1
            switch digits.last {
            case "k", "K": unit = 1 << 10; digits = digits.dropLast()
            case "m", "M": unit = 1 << 20; digits = digits.dropLast()
            default: break
            }
            guard let value = Int(digits), value > 0, value <= (1 << 30) / unit else {
                throw fail(node, "\(name): expected a size such as 1048576, 1024k or 1m, found '\(text)'")
            }
            return value * unit
        }

        mutating func configuration(_ mapping: Node.Mapping) throws(ConfigurationError) -> ProxyConfiguration {
            var config = ProxyConfiguration()
            var sawNodes = false
            var keyHashNode: Node?
            var discoveryKey: Node?
            for (keyNode, value) in mapping {
                let key = try string(keyNode, "option name")
                switch key {
                case "listen": config.listen = try hostPort(value, key)
                case "threads": config.threads = try integer(value, key, minimum: 1, maximum: 64)
                case "replicas": config.replicas = try integer(value, key, minimum: 1, maximum: 8)
                case "hash":
                    switch try string(value, key) {
                    case "ketama", "ketama_weighted", "libmemcached": config.hashMode = .libmemcachedWeighted
                    case "twemproxy": config.hashMode = .twemproxy
                    case "ketama_classic": config.hashMode = .libmemcachedClassic
                    case let other:
                        throw fail(value, "hash: expected ketama, twemproxy or ketama_classic, found '\(other)'")
                    }
                case "key_hash":
                    let text = try string(value, key)
                    guard let hash = TwemproxyKeyHash(rawValue: text) else {
                        throw fail(value, "key_hash: expected one of \(TwemproxyKeyHash.allCases.map(\.rawValue).joined(separator: ", ")), found '\(text)'")
                    }
                    config.keyHash = hash
                    keyHashNode = value
                case "backend_connections": config.backendConnections = try integer(value, key, minimum: 1, maximum: 16)
                case "request_timeout_ms": config.requestTimeoutMilliseconds = try integer(value, key, minimum: 1, maximum: 600_000)
                case "connect_timeout_ms": config.connectTimeoutMilliseconds = try integer(value, key, minimum: 1, maximum: 600_000)
                case "failure_limit": config.failureLimit = try integer(value, key, minimum: 1, maximum: 1000)
                case "probe_initial_ms": config.probeInitialMilliseconds = try integer(value, key, minimum: 1, maximum: 600_000)
                case "probe_max_ms": config.probeMaxMilliseconds = try integer(value, key, minimum: 1, maximum: 3_600_000)
                case "flap_window_s": config.flapWindowSeconds = try integer(value, key, minimum: 0, maximum: 86_400)
                case "write_policy":
                    let text = try string(value, key)
                    guard let policy = ProxyConfiguration.WritePolicy(rawValue: text) else {
                        throw fail(value, "write_policy: expected all or primary, found '\(text)'")
                    }
                    config.writePolicy = policy
                case "miss_failover": config.missFailover = try boolean(value, key)
                case "replica_check": config.replicaCheck = try boolean(value, key)
                case "flush_all": config.flushAllEnabled = try boolean(value, key)
                case "warmup_s": config.warmupSeconds = try integer(value, key, minimum: 0, maximum: 86_400)
                case "membership_settle_ms":
                    config.membershipSettleMilliseconds = try integer(value, key, minimum: 0, maximum: 3_600_000)
                case "rebalance": config.rebalance = try boolean(value, key)
                case "rebalance_keys_per_s":
                    config.rebalanceKeysPerSecond = try integer(value, key, minimum: 1, maximum: 10_000_000)
                case "watch_config": config.watchConfiguration = try boolean(value, key)
                case "log_level":
                    let text = try string(value, key)
                    guard let level = Logger.Level(rawValue: text) else {
                        throw fail(value, "log_level: expected one of \(ProxyConfiguration.logLevelNames), found '\(text)'")
                    }
                    config.logLevel = level
                case "item_size_max": config.itemSizeMax = try size(value, key)
                case "max_connections": config.maxConnections = try integer(value, key, minimum: 1, maximum: 1_000_000)
                case "client_reply_max": config.clientReplyMax = try size(value, key)
                case "request_line_max": config.requestLineMax = try size(value, key)
                case "shutdown_grace_ms": config.shutdownGraceMilliseconds = try integer(value, key, minimum: 0, maximum: 600_000)
                case "metrics_listen":
                    let text = try string(value, key)
                    guard let address = HostPort(adminAddress: text) else {
                        throw fail(value, "metrics_listen: expected host:port or a port (127.0.0.1), found '\(text)'")
                    }
                    config.metricsListen = address
                case "admin_token":
                    // The value is a secret: the message never repeats it.
                    guard let token = AdminToken(try string(value, key)) else {
                        throw fail(value, "admin_token: expected 16 to 1024 printable ASCII characters without spaces")
                    }
                    config.adminToken = token
                case "admin_token_file":
                    let file = try string(value, key)
                    guard !file.isEmpty else { throw fail(value, "admin_token_file: expected a file name") }
                    config.adminTokenFile = file
                case "admin_token_protects_metrics": config.adminTokenProtectsMetrics = try boolean(value, key)
                case "nodes":
                    config.nodes = try nodes(value)
                    sawNodes = true
                case "discovery":
                    config.discovery = try discovery(value)
                    discoveryKey = keyNode
                case "tls": config.clientTLS = try clientTLS(value)
                case "node_tls": config.nodeTLS = try nodeTLS(value)
                case "node_auth": config.nodeAuth = try nodeAuth(value)
                default:
                    throw fail(keyNode, "unknown option '\(key)' (see examples/proxy.yaml for the options)")
                }
            }
            if let discoveryKey {
                // One source of truth for the node list: a list written here
                // next to a discovered one would be overwritten at the next look-up.
                guard !sawNodes else { throw fail(discoveryKey, "discovery: give nodes: or discovery:, not both") }
            } else {
                guard sawNodes, !config.nodes.isEmpty else {
                    throw ConfigurationError("\(path): no nodes: list the cache nodes under 'nodes:', or name them with 'discovery:'")
                }
            }
            if config.adminToken != nil && config.adminTokenFile != nil {
                throw ConfigurationError("\(path): admin_token and admin_token_file: give one of them (the file keeps the secret out of this one)")
            }
            if let keyHashNode, config.hashMode != .twemproxy, config.keyHash != .md5 {
                throw fail(keyHashNode, "key_hash: only with hash: twemproxy (libmemcached's modes fix their own key hash)")
            }
            if config.probeMaxMilliseconds < config.probeInitialMilliseconds {
                throw ConfigurationError("\(path): probe_max_ms must not be below probe_initial_ms")
            }
            return config
        }

        /// `tls:` cert, key, ca, verify_clients (examples/proxy.yaml).
        func clientTLS(_ node: Node) throws(ConfigurationError) -> TLSServerSettings {
            guard let mapping = node.mapping else { throw fail(node, "tls: expected a mapping (cert:, key:, ca:, verify_clients:)") }
            var settings = TLSServerSettings()
            settings.releaseIdleBuffers = false   // see TLSServerSettings
            var verify = false
            for (keyNode, value) in mapping {
                let key = try string(keyNode, "tls option")
                switch key {
                case "cert": settings.chainCertificate = try string(value, "tls.cert")
                case "key": settings.privateKey = try string(value, "tls.key")
                case "ca": settings.caCertificate = try string(value, "tls.ca")
                case "verify_clients": verify = try boolean(value, "tls.verify_clients")
                default: throw fail(keyNode, "tls: unknown option '\(key)' (cert, key, ca, verify_clients)")
                }
            }
            guard settings.chainCertificate != nil else { throw fail(node, "tls: cert: is required (the proxy's certificate, PEM)") }
            if verify {
                guard settings.caCertificate != nil else { throw fail(node, "tls: verify_clients: true needs ca:") }
                settings.verifyMode = 2
            }
            return settings
        }

        /// `node_auth:` user, password_file (examples/proxy.yaml).
        func nodeAuth(_ node: Node) throws(ConfigurationError) -> NodeCredentials {
            guard let mapping = node.mapping else { throw fail(node, "node_auth: expected a mapping (user:, password_file:)") }
            var user: String?
            var file: String?
            for (keyNode, value) in mapping {
                let name = try string(keyNode, "node_auth option")
                switch name {
                case "user": user = try string(value, "node_auth.user")
                case "password_file": file = try string(value, "node_auth.password_file")
                default: throw fail(keyNode, "node_auth: unknown option '\(name)' (user, password_file)")
                }
            }
            guard let user, !user.isEmpty, !user.contains(" "), let file, !file.isEmpty else {
                throw fail(node, "node_auth: user: (no spaces) and password_file: are required")
            }
            return NodeCredentials(user: user, passwordFile: file)
        }

        /// `node_tls:` ca, cert, key (examples/proxy.yaml).
        func nodeTLS(_ node: Node) throws(ConfigurationError) -> TLSClientSettings {
            guard let mapping = node.mapping else { throw fail(node, "node_tls: expected a mapping (ca:, cert:, key:)") }
            var ca: String?
            var certificate: String?
            var key: String?
            for (keyNode, value) in mapping {
                let name = try string(keyNode, "node_tls option")
                switch name {
                case "ca": ca = try string(value, "node_tls.ca")
                case "cert": certificate = try string(value, "node_tls.cert")
                case "key": key = try string(value, "node_tls.key")
                default: throw fail(keyNode, "node_tls: unknown option '\(name)' (ca, cert, key)")
                }
            }
            guard let ca else { throw fail(node, "node_tls: ca: is required (the CA the nodes' certificates chain to)") }
            return TLSClientSettings(caCertificate: ca, certificate: certificate, privateKey: key)
        }

        /// `discovery:` (see `DiscoverySettings` and examples/proxy.yaml).
        func discovery(_ node: Node) throws(ConfigurationError) -> DiscoverySettings {
            guard let mapping = node.mapping else { throw fail(node, "discovery: expected a mapping (name:, port: or srv:, ...)") }
            var name: String?
            var service: String?
            var port: UInt16?
            var family = DiscoverySettings.Family.auto
            var refresh = 5
            var timeout = 1000
            var server: HostPort?
            for (keyNode, value) in mapping {
                let key = try string(keyNode, "discovery option")
                let label = "discovery.\(key)"
                switch key {
                case "name", "srv":
                    let text = try string(value, label)
                    guard DNSName(parsing: text) != nil else {
                        throw fail(value, "\(label): expected a DNS name (labels of 1 to 63 characters, 253 in all), found '\(text)'")
                    }
                    if key == "name" { name = text } else { service = text }
                case "port": port = UInt16(try integer(value, label, minimum: 1, maximum: 65535))
                case "family":
                    let text = try string(value, label)
                    guard let parsed = DiscoverySettings.Family(rawValue: text) else {
                        throw fail(value, "\(label): expected auto, ipv4 or ipv6, found '\(text)'")
                    }
                    family = parsed
                case "refresh_s": refresh = try integer(value, label, minimum: 1, maximum: 3600)
                case "timeout_ms": timeout = try integer(value, label, minimum: 10, maximum: 60_000)
                case "server":
                    let text = try string(value, label)
                    // A server named by a name would need DNS to be found.
                    let parsed = IPAddress(numeric: text) != nil ? HostPort(host: text, port: 53) : HostPort(parsing: text)
                    guard let parsed, IPAddress(numeric: parsed.host) != nil else {
                        throw fail(value, "\(label): expected a numeric address, with a port or not (127.0.0.1:53, [::1]:53, 10.96.0.10), found '\(text)'")
                    }
                    server = parsed
                default:
                    throw fail(keyNode, "discovery: unknown option '\(key)' (name, port, srv, family, refresh_s, timeout_ms, server)")
                }
            }
            var settings: DiscoverySettings
            switch (name, service, port) {
            case (let name?, nil, let port?): settings = DiscoverySettings(query: .addresses(name: name, port: port))
            case (_?, nil, nil): throw fail(node, "discovery: name: needs port: (the port every address serves on)")
            case (nil, let service?, nil): settings = DiscoverySettings(query: .service(name: service))
            case (nil, _?, _?): throw fail(node, "discovery: srv: takes each node's port from its record; leave port: out")
            case (_?, _?, _): throw fail(node, "discovery: give name: (A/AAAA records) or srv: (SRV records), not both")
            case (nil, nil, _): throw fail(node, "discovery: name: and port:, or srv:, is required")
            }
            settings.family = family
            settings.refreshSeconds = refresh
            settings.timeoutMilliseconds = timeout
            settings.server = server
            return settings
        }

        func nodes(_ node: Node) throws(ConfigurationError) -> [RingNode] {
            guard let sequence = node.sequence else { throw fail(node, "nodes: expected a list of nodes") }
            var result: [RingNode] = []
            var seen: [String: Int] = [:]
            for (index, entry) in sequence.enumerated() {
                let parsed = try self.node(entry, index: index)
                let identity = "\(parsed.host):\(parsed.port)"
                if let first = seen[identity] {
                    throw fail(entry, "nodes[\(index)]: \(identity) is already nodes[\(first)]")
                }
                seen[identity] = index
                result.append(parsed)
            }
            return result
        }

        func node(_ entry: Node, index: Int) throws(ConfigurationError) -> RingNode {
            let label = "nodes[\(index)]"
            if let scalar = entry.scalar {
                guard let parsed = RingNode(twemproxyStyle: scalar.string) else {
                    throw fail(entry, "\(label): expected host:port[:weight] [name], found '\(scalar.string)'")
                }
                return parsed
            }
            guard let mapping = entry.mapping else { throw fail(entry, "\(label): expected host:port or a mapping") }
            var address: HostPort?
            var weight: UInt32 = 1
            var name: String?
            for (keyNode, value) in mapping {
                let key = try string(keyNode, "\(label) option")
                switch key {
                case "address": address = try hostPort(value, "\(label).address")
                case "weight": weight = UInt32(try integer(value, "\(label).weight", minimum: 1, maximum: 1_000_000))
                case "name": name = try string(value, "\(label).name")
                default: throw fail(keyNode, "\(label): unknown option '\(key)' (address, weight, name)")
                }
            }
            guard let address else { throw fail(entry, "\(label): address is required") }
            return RingNode(host: address.host, port: address.port, weight: weight, name: name)
        }
    }
}

extension RingNode {
    /// twemproxy's server syntax: `host:port[:weight] [name]`.
    public init?(twemproxyStyle text: String) {
        let parts = text.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count == 1 || parts.count == 2 else { return nil }
        let fields = parts[0].split(separator: ":", omittingEmptySubsequences: false)
        var weight: UInt32 = 1
        var addressText = String(parts[0])
        if fields.count == 3, !parts[0].hasPrefix("[") {
            guard let parsedWeight = UInt32(fields[2]), parsedWeight > 0 else { return nil }
            weight = parsedWeight
            addressText = "\(fields[0]):\(fields[1])"
        }
        guard let address = HostPort(parsing: addressText) else { return nil }
        self.init(host: address.host, port: address.port, weight: weight, name: parts.count == 2 ? String(parts[1]) : nil)
    }
}
