import EventLoop
import Logging
import Glibc

/// Everything that decides how the proxy runs, with a documented default for
/// every option. Built from a YAML file (`ConfigurationFile`), from command-line
/// flags, or both (flags win). `examples/proxy.yaml` lists every key.
public struct ProxyConfiguration: Sendable, Equatable {
    /// Address clients connect to. Default `127.0.0.1:22121` (twemproxy's usual port).
    public var listen = HostPort(host: "127.0.0.1", port: 22121)
    /// Worker threads, each with its own event loop, clients and backend connections. Default 2.
    public var threads = 2
    /// The cache nodes, in ring order. With `discovery`, the list the last
    /// look-up gave (empty until the first).
    public var nodes: [RingNode] = []
    /// Where the node list comes from instead of `nodes:` in the file: a DNS
    /// name followed every few seconds (`discovery:`). Default none.
    public var discovery: DiscoverySettings?
    /// Copies of each key: the first R distinct nodes clockwise from the key's point.
    /// Default 2 when there are 2 or more nodes, else 1.
    public var replicas: Int?
    /// How keys are placed. Default `.libmemcachedWeighted` (libmemcached KETAMA_WEIGHTED).
    public var hashMode: KetamaRing.Mode = .libmemcachedWeighted
    /// With `hash: twemproxy`, how keys are hashed (nutcracker's `hash:`):
    /// md5 (default), one_at_a_time, fnv1_64, fnv1a_64, fnv1_32, fnv1a_32,
    /// crc32, crc32a, murmur.
    public var keyHash: TwemproxyKeyHash = .md5

    /// The key hash the ring uses: `keyHash` under twemproxy's rules, else the mode's own.
    public var effectiveKeyHash: TwemproxyKeyHash {
        switch hashMode {
        case .twemproxy: keyHash
        case .libmemcachedWeighted: .md5
        case .libmemcachedClassic: .oneAtATime
        }
    }
    /// Persistent connections from each worker to each node, pipelining the
    /// requests of many clients. Default 1.
    public var backendConnections = 1
    /// A request a node has not answered in this long fails (and is retried on a
    /// replica when it is a read). Default 1000 ms.
    public var requestTimeoutMilliseconds = 1000
    /// Connecting to a node takes at most this long. Default 1000 ms.
    public var connectTimeoutMilliseconds = 1000
    /// Consecutive failures (errors, timeouts, refused connections) before a node
    /// is marked down. Default 2.
    public var failureLimit = 2
    /// First delay between probes of a down node; doubles up to the maximum. Default 200 ms / 5000 ms.
    public var probeInitialMilliseconds = 200
    public var probeMaxMilliseconds = 5000
    /// A node that goes down again within this many seconds of coming back is
    /// flapping: it must stay healthy twice as long (up to 5 minutes) before it
    /// serves again. Default 30 s.
    public var flapWindowSeconds = 30
    /// `all`: a write answers once every live replica has; `primary`: once the
    /// primary has (the other replicas finish in the background). Default `all`.
    public var writePolicy: WritePolicy = .all
    /// `tls:` clients connect to the proxy over TLS with this certificate
    /// (and, with `ca` and `verify_clients`, must show one of their own).
    /// nil (the default): plain text.
    public var clientTLS: TLSServerSettings?
    /// `node_tls:` the proxy speaks TLS to every node, which must show a
    /// certificate from `ca` for its address; nil (the default): plain text.
    public var nodeTLS: TLSClientSettings?
    /// `node_auth:` credentials for nodes started with `-Y`; nil (the default): none.
    public var nodeAuth: NodeCredentials?
    /// Read each write's key back from its replicas and repair copies that
    /// differ (writers through other proxies, `ReplicaCheck`). Default on;
    /// only replicas 2 or more are checked.
    public var replicaCheck = true
    /// Retry a miss at the primary on the other replicas. Default off.
    public var missFailover = false
    /// Whether clients may flush_all (sent to every node). Default on.
    public var flushAllEnabled = true
    /// After the node list changes, keys missing at their new owners are
    /// looked up at their previous owners on a miss, and copied over, for this
    /// long (the `warming` phase, docs/membership.md). Default 600 s.
    public var warmupSeconds = 600
    /// How much the proxy logs: `trace` ... `critical` (swift-log's levels);
    /// a reload changes it.
    public var logLevel: Logger.Level = .info
    static let logLevelNames = Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")
    /// Copy moved keys from their old owners during a change's warm-up, and
    /// delete copies no member owns once it is over (`Rebalancer`).
    public var rebalance = true
    /// The rebalance's pace, keys listed and handled per second.
    public var rebalanceKeysPerSecond = 20_000
    /// The longest time between the first and the last proxy learning a
    /// membership change: each phase of a change waits this long for the
    /// others. Default 2000 ms (a file every proxy watches, checked every 250 ms).
    public var membershipSettleMilliseconds = 2000
    /// Reload when the configuration file changes (checked every 250 ms), so
    /// proxies that share one file follow it without a signal. Default on.
    public var watchConfiguration = true
    /// Largest item accepted from clients (memcached's `-I`); larger values get
    /// memcached's error without reaching a node. Default 1 MiB.
    public var itemSizeMax = 1 << 20
    /// Most simultaneous client connections. Default 4096.
    public var maxConnections = 4096
    /// Most reply bytes one client connection may have waiting in the proxy
    /// (values collected from nodes, not yet written to the client). A request
    /// whose reply would go over is answered `SERVER_ERROR out of memory
    /// writing get response`, as memcached answers when it cannot hold a reply.
    /// Default 64 MiB.
    public var clientReplyMax = 64 << 20
    /// Longest request line (a multi-get's keys included) accepted from a
    /// client; over it the client gets `CLIENT_ERROR line too long` and is
    /// disconnected. Default 2 MiB.
    public var requestLineMax = 2 << 20
    /// On SIGTERM or SIGINT the proxy stops accepting, answers what it has
    /// read, and exits after at most this long. Default 5000 ms.
    public var shutdownGraceMilliseconds = 5000
    /// The admin endpoint (`GET /metrics`, `POST /reload`), or nil for none.
    /// Default none. A bare port (`9150`, `:9150`) means 127.0.0.1: only a
    /// host written out puts it beyond the machine.
    public var metricsListen: HostPort?
    /// The bearer token `POST /reload` requires (`Authorization: Bearer
    /// <token>`), or nil for none. Default none.
    public var adminToken: AdminToken?
    /// The file `adminToken` is read from, again on every reload (so a new
    /// token takes effect with the reload). Default none.
    public var adminTokenFile: String?
    /// Whether `GET /metrics` requires the token too. Default false: a
    /// scraper keeps working when a token is added to protect reloads.
    public var adminTokenProtectsMetrics = false

    public enum WritePolicy: String, Sendable, Equatable {
        case all
        case primary
    }

    public init() {}

    /// Replicas in effect: the configured count, capped at the node count.
    public var effectiveReplicas: Int {
        let wanted = replicas ?? (nodes.count >= 2 ? 2 : 1)
        return max(1, min(wanted, nodes.count))
    }
}

/// `host:port`, with IPv6 hosts in brackets (`[::1]:11211`).
public struct HostPort: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`, `[v6]:port`, or a bare host with `defaultPort`.
    public init?(parsing text: String, defaultPort: UInt16? = nil) {
        var host = Substring(text)
        var portText: Substring?
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return nil }
            let rest = host[host.index(after: close)...]
            host = host[host.index(after: host.startIndex)..<close]
            if rest.hasPrefix(":") { portText = rest.dropFirst() } else if !rest.isEmpty { return nil }
        } else if let colon = host.lastIndex(of: ":") {
            portText = host[host.index(after: colon)...]
            host = host[..<colon]
        }
        guard !host.isEmpty else { return nil }
        if let portText {
            guard let port = UInt16(portText), port > 0 else { return nil }
            self.port = port
        } else {
            guard let defaultPort else { return nil }
            self.port = defaultPort
        }
        self.host = String(host)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

extension HostPort {
    /// The admin endpoint's address: `host:port` as for any address, or a
    /// bare port (`9150` or `:9150`) meaning 127.0.0.1:9150, so that leaving
    /// the host out never exposes the endpoint to the network.
    public init?(adminAddress text: String) {
        let digits = text.hasPrefix(":") ? text.dropFirst() : Substring(text)
        if !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) {
            guard let port = UInt16(digits), port > 0 else { return nil }
            self.init(host: "127.0.0.1", port: port)
        } else {
            self.init(parsing: text)
        }
    }

    /// Whether the host is this machine's loopback: 127.0.0.0/8, ::1, an
    /// IPv4-mapped 127 address, or `localhost`.
    public var isLoopback: Bool {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { bytes in
                let loopback = bytes.prefix(15).allSatisfy { $0 == 0 } && bytes[15] == 1
                let mapped = bytes.prefix(10).allSatisfy { $0 == 0 } && bytes[10] == 0xFF && bytes[11] == 0xFF && bytes[12] == 127
                return loopback || mapped
            }
        }
        return host.lowercased() == "localhost"
    }
}
