import Yams

/// Turns a twemproxy (nutcracker) configuration into memcluster-proxy's, pool
/// by pool, so a deployment moves over without moving a key: a memcache pool
/// with `distribution: ketama` becomes `hash: twemproxy` with the same key
/// hash and the same servers (weights and names), which place every key where
/// nutcracker does. What has no equivalent is refused with the reason: redis
/// pools, unix sockets, other distributions, hash tags, hash functions the
/// proxy does not have.
public enum NutcrackerConversion {
    /// One pool of the file: its memcluster-proxy YAML, or why it cannot have one.
    public struct Pool: Sendable, Equatable {
        public let name: String
        public let yaml: String?
        public let refusals: [String]
    }

    public static func convert(_ text: String, path: String = "<nutcracker.yml>") throws(ConfigurationError) -> [Pool] {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw ConfigurationError("\(path): not YAML: \(error)")
        }
        guard let pools = root?.mapping, !pools.isEmpty else {
            throw ConfigurationError("\(path): a nutcracker configuration is a mapping of pools (alpha:, beta:, ...)")
        }
        return pools.map { name, pool in convertPool(name.string ?? "?", pool) }
    }

    /// A pool's options in memcluster-proxy's words, in the order they are written.
    private struct Output {
        var lines: [String] = []
        var notes: [String] = []
        var refusals: [String] = []
        var nodes: [String] = []
    }

    private static func convertPool(_ name: String, _ pool: Node) -> Pool {
        guard let options = pool.mapping else {
            return Pool(name: name, yaml: nil, refusals: ["the pool is not a mapping of options"])
        }
        var out = Output()
        var seen: [String: Node] = [:]
        for (key, value) in options { seen[key.string ?? ""] = value }
        for (key, value) in options {
            convertOption(key.string ?? "", value, seen: seen, into: &out)
        }
        // nutcracker's defaults: fnv1a_64 keys on a ketama ring.
        if seen["hash"] == nil { out.lines += ["hash: twemproxy", "key_hash: \(TwemproxyKeyHash.fnv1a_64.rawValue)"] }
        if seen["servers"] == nil { out.refusals.append("no servers") }
        guard out.refusals.isEmpty else { return Pool(name: name, yaml: nil, refusals: out.refusals) }
        var yaml = ["# pool \(name), converted from nutcracker: every key is placed where nutcracker places it."]
        yaml += out.notes.map { "# " + $0 }
        yaml += out.lines
        yaml.append("replicas: 1                         # nutcracker keeps one copy; raise it for redundancy (keys then also go to the next node)")
        yaml.append("nodes:")
        yaml += out.nodes.map { "  - \($0)" }
        let text = yaml.joined(separator: "\n") + "\n"
        // The result must load as it is; a value nutcracker took but the proxy
        // does not (timeout: -1, a weight of 0) is refused here, with the reason.
        do {
            _ = try ConfigurationFile.parse(text, path: "converted YAML")
        } catch {
            return Pool(name: name, yaml: nil, refusals: ["\(error)"])
        }
        return Pool(name: name, yaml: text, refusals: [])
    }

    private static func convertOption(_ key: String, _ value: Node, seen: [String: Node], into out: inout Output) {
        let text = value.string ?? ""
        switch key {
        case "listen":
            if text.hasPrefix("/") {
                out.refusals.append("listen \(text): a unix socket (the proxy listens on TCP only)")
            } else {
                out.lines.append("listen: \(text)")
            }
        case "hash":
            if let hash = TwemproxyKeyHash(rawValue: text) {
                out.lines.append("hash: twemproxy")
                out.lines.append("key_hash: \(hash.rawValue)")
            } else {
                out.refusals.append("hash \(text): the proxy has md5, one_at_a_time, fnv1_64, fnv1a_64, fnv1_32, fnv1a_32, crc32, crc32a and murmur")
            }
        case "distribution":
            if text != "ketama" {
                out.refusals.append("distribution \(text): the proxy places keys by ketama only, so keys would move")
            }
        case "hash_tag":
            out.refusals.append("hash_tag \(text): the proxy hashes whole keys, so tagged keys would move")
        case "redis":
            if value.bool == true { out.refusals.append("redis: true: the proxy speaks memcached's protocol only") }
        case "redis_auth", "redis_db":
            out.refusals.append("\(key): a redis option")
        case "timeout":
            // nutcracker waits forever without a timeout (or with -1); the proxy always has one.
            if let milliseconds = Int(text), milliseconds > 0 {
                out.lines.append("request_timeout_ms: \(text)")
            } else {
                out.notes.append("timeout: \(text) is left out: the proxy always times requests out (request_timeout_ms, 1000 by default).")
            }
        case "reuseport":
            out.notes.append("reuseport: \(text) has no equivalent and is left out (one listener hands clients to the workers).")
        case "server_failure_limit":
            out.lines.append("failure_limit: \(text)")
        case "server_retry_timeout":
            // nutcracker retries a failed server at a fixed interval: no backoff.
            out.lines.append("probe_initial_ms: \(text)")
            out.lines.append("probe_max_ms: \(text)")
        case "server_connections":
            out.lines.append("backend_connections: \(text)             # per worker thread, per node")
        case "client_connections":
            if let count = Int(text), count > 0 { out.lines.append("max_connections: \(count)") }
        case "auto_eject_hosts":
            if value.bool == true {
                out.notes.append("auto_eject_hosts: nutcracker takes a failed server off the ring and its keys move to the")
                out.notes.append("others; the proxy keeps them in place and serves them from replicas (with replicas: 1, they")
                out.notes.append("miss until the node is back). failure_limit and probe_initial_ms play the same roles.")
            }
        case "preconnect":
            out.notes.append("preconnect: \(text) is left out: the proxy connects to each node on first use and probes failed ones.")
        case "backlog":
            out.notes.append("backlog: \(text) is left out: the proxy listens with a backlog of 1024.")
        case "tcpkeepalive":
            out.notes.append("tcpkeepalive: \(text) is left out: the proxy finds dead nodes by its request timeouts and probes.")
        case "servers":
            guard let servers = value.sequence else {
                out.refusals.append("servers: not a list")
                return
            }
            for server in servers {
                let entry = server.string ?? ""
                if entry.hasPrefix("/") {
                    out.refusals.append("server \(entry): a unix socket")
                } else if RingNode(twemproxyStyle: entry) == nil {
                    out.refusals.append("server \(entry): not host:port:weight [name]")
                } else {
                    out.nodes.append(entry)
                }
            }
        default:
            out.refusals.append("\(key): an option the converter does not know")
        }
    }
}
