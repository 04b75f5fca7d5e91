import Glibc

/// Where the node list comes from when it is discovered rather than listed:
/// a DNS name asked again every `refreshSeconds`, as a Kubernetes headless
/// Service publishes the pods of a StatefulSet (`discovery:` in the YAML,
/// instead of `nodes:`).
public struct DiscoverySettings: Sendable, Equatable {
    public enum Query: Sendable, Equatable {
        /// A (or AAAA) records of `name`: every address is a node on `port`.
        case addresses(name: String, port: UInt16)
        /// SRV records of `name`: every record is a node at its target's
        /// address and its port, placed on the ring by its target's name.
        case service(name: String)
    }

    /// Which address records to ask for.
    public enum Family: String, Sendable, Equatable {
        /// A; AAAA only when the name has no A record. A dual-stack pod has
        /// one of each, and both would be two nodes for one process.
        case auto
        case ipv4
        case ipv6
    }

    public var query: Query
    public var family: Family = .auto
    /// Seconds between two look-ups. Default 5.
    public var refreshSeconds = 5
    /// How long one attempt waits for the server's answer; 3 attempts per
    /// question. Default 1000 ms.
    public var timeoutMilliseconds = 1000
    /// The DNS server (a numeric address; port 53 unless given), or nil for
    /// the first `nameserver` of /etc/resolv.conf.
    public var server: HostPort?

    public init(query: Query) {
        self.query = query
    }

    /// The name asked for, as written.
    public var name: String {
        switch query {
        case .addresses(let name, _), .service(let name): return name
        }
    }

    /// The server to ask: the configured one, or the first nameserver of
    /// `resolvConf` (read when the configuration is loaded, so a reload picks
    /// up a changed file).
    func resolvedServer(resolvConf path: String = "/etc/resolv.conf") throws(ConfigurationError) -> HostPort {
        if let server { return server }
        let text: String
        do {
            text = String(decoding: try readFile(path, limit: 1 << 16), as: UTF8.self)
        } catch {
            throw ConfigurationError("discovery: no server given, and \(error); set discovery.server")
        }
        guard let server = ResolvConf.firstNameserver(in: text) else {
            throw ConfigurationError("discovery: no server given, and \(path) names no nameserver; set discovery.server")
        }
        return server
    }
}

/// The part of resolv.conf(5) discovery reads.
enum ResolvConf {
    /// The first `nameserver` line's address, port 53. Lines that do not
    /// hold a plain numeric address are skipped, as the C library skips them;
    /// so is a link-local IPv6 address with a zone (`fe80::1%eth0`), which
    /// discovery does not support.
    static func firstNameserver(in text: String) -> HostPort? {
        for line in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard words.count >= 2, words[0] == "nameserver" else { continue }
            let address = String(words[1])
            if IPAddress(numeric: address) != nil { return HostPort(host: address, port: 53) }
        }
        return nil
    }
}
