extension ConfigurationFile {
    /// The configuration as a YAML file with every option written out, under
    /// the names `parse` reads (`examples/proxy.yaml`'s), so what
    /// `--check-config` prints is what the proxy would run with and reads
    /// back with `--config`. Options that are off are comments; the admin
    /// token itself is never printed.
    public static func render(_ configuration: ProxyConfiguration) -> String {
        let c = configuration
        var lines = [
            "listen: \(scalar(c.listen.description))",
            "threads: \(c.threads)",
            replicasLine(c),
            "hash: \(hashName(c.hashMode))",
            c.hashMode == .twemproxy ? "key_hash: \(c.keyHash.rawValue)" : "# key_hash: only with hash: twemproxy",
            "backend_connections: \(c.backendConnections)",
            "request_timeout_ms: \(c.requestTimeoutMilliseconds)",
            "connect_timeout_ms: \(c.connectTimeoutMilliseconds)",
            "failure_limit: \(c.failureLimit)",
            "probe_initial_ms: \(c.probeInitialMilliseconds)",
            "probe_max_ms: \(c.probeMaxMilliseconds)",
            "flap_window_s: \(c.flapWindowSeconds)",
            "write_policy: \(c.writePolicy.rawValue)",
            "miss_failover: \(c.missFailover)",
            "replica_check: \(c.replicaCheck)",
            "flush_all: \(c.flushAllEnabled)",
            "warmup_s: \(c.warmupSeconds)",
            "membership_settle_ms: \(c.membershipSettleMilliseconds)",
            "rebalance: \(c.rebalance)",
            "rebalance_keys_per_s: \(c.rebalanceKeysPerSecond)",
            "watch_config: \(c.watchConfiguration)",
            "log_level: \(c.logLevel.rawValue)",
            "item_size_max: \(size(c.itemSizeMax))",
            "max_connections: \(c.maxConnections)",
            "client_reply_max: \(size(c.clientReplyMax))",
            "request_line_max: \(size(c.requestLineMax))",
            "shutdown_grace_ms: \(c.shutdownGraceMilliseconds)",
            c.metricsListen.map { "metrics_listen: \(scalar($0.description))" }
                ?? "# metrics_listen: not set (no admin endpoint)",
        ]
        if let file = c.adminTokenFile {
            lines.append("admin_token_file: \(scalar(file))")
        } else if c.adminToken != nil {
            lines.append("# admin_token: set (not shown)")
        } else {
            lines.append("# admin_token: not set (POST /reload needs no token)")
        }
        lines.append("admin_token_protects_metrics: \(c.adminTokenProtectsMetrics)")
        lines += tls(c)
        if let discovery = c.discovery {
            lines += self.discovery(discovery)
            return lines.joined(separator: "\n") + "\n"
        }
        lines.append("nodes:")
        for node in c.nodes {
            let address = scalar(HostPort(host: node.host, port: node.port).description)
            if node.weight == 1 && node.name == nil {
                lines.append("  - \(address)")
            } else {
                lines.append("  - address: \(address)")
                lines.append("    weight: \(node.weight)")
                if let name = node.name { lines.append("    name: \(scalar(name))") }
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// `tls:` and `node_tls:`, or comments saying plain text is in use.
    static func tls(_ c: ProxyConfiguration) -> [String] {
        var lines: [String] = []
        if let t = c.clientTLS {
            lines += ["tls:", "  cert: \(scalar(t.chainCertificate ?? ""))"]
            if let key = t.privateKey { lines.append("  key: \(scalar(key))") }
            if let ca = t.caCertificate { lines.append("  ca: \(scalar(ca))") }
            lines.append("  verify_clients: \(t.verifyMode == 2)")
        } else {
            lines.append("# tls: not set (clients speak plain text)")
        }
        if let n = c.nodeTLS {
            lines += ["node_tls:", "  ca: \(scalar(n.caCertificate))"]
            if let cert = n.certificate { lines.append("  cert: \(scalar(cert))") }
            if let key = n.privateKey { lines.append("  key: \(scalar(key))") }
        } else {
            lines.append("# node_tls: not set (plain text to the nodes)")
        }
        if let a = c.nodeAuth {
            lines += ["node_auth:", "  user: \(scalar(a.user))", "  password_file: \(scalar(a.passwordFile))"]
        } else {
            lines.append("# node_auth: not set (nodes without -Y)")
        }
        return lines
    }

    /// `discovery:` in place of `nodes:`: the name is not looked up here.
    static func discovery(_ d: DiscoverySettings) -> [String] {
        var lines = ["# nodes: the ones the name below gives, looked up every refresh_s", "discovery:"]
        switch d.query {
        case .addresses(let name, let port):
            lines += ["  name: \(scalar(name))", "  port: \(port)"]
        case .service(let name):
            lines.append("  srv: \(scalar(name))")
        }
        lines += [
            "  family: \(d.family.rawValue)",
            "  refresh_s: \(d.refreshSeconds)",
            "  timeout_ms: \(d.timeoutMilliseconds)",
            d.server.map { "  server: \(scalar($0.description))" } ?? "  # server: the first nameserver of /etc/resolv.conf",
        ]
        return lines
    }

    /// The copies in effect. With discovery the nodes are not known yet: the
    /// setting as written, or the default's rule.
    static func replicasLine(_ c: ProxyConfiguration) -> String {
        guard c.discovery != nil else { return "replicas: \(c.effectiveReplicas)" + replicasNote(c) }
        return c.replicas.map { "replicas: \($0)    # at most one copy per discovered node" }
            ?? "# replicas: 2 when the name gives 2 or more nodes, else 1"
    }

    /// Why the copies in effect are fewer than configured, when they are.
    static func replicasNote(_ c: ProxyConfiguration) -> String {
        guard let wanted = c.replicas, wanted > c.effectiveReplicas else { return "" }
        return "    # \(wanted) configured; at most one copy per node"
    }

    static func hashName(_ mode: KetamaRing.Mode) -> String {
        switch mode {
        case .libmemcachedWeighted: "ketama"
        case .twemproxy: "twemproxy"
        case .libmemcachedClassic: "ketama_classic"
        }
    }

    /// Bytes with the largest suffix that divides them exactly (`1m`, `1024k`, `1000`).
    static func size(_ bytes: Int) -> String {
        if bytes % (1 << 20) == 0 { return "\(bytes >> 20)m" }
        if bytes % (1 << 10) == 0 { return "\(bytes >> 10)k" }
        return "\(bytes)"
    }

    /// Plain when YAML reads the text back unchanged as a string (addresses,
    /// names); double-quoted otherwise (`[::1]:11211` would be a list).
    static func scalar(_ text: String) -> String {
        let plain = text.unicodeScalars.allSatisfy {
            ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || "._-:/".unicodeScalars.contains($0)
        }
        if plain, let first = text.unicodeScalars.first, !"-:".unicodeScalars.contains(first), !text.hasSuffix(":") {
            return text
        }
        var quoted = "\""
        for character in text.unicodeScalars {
            switch character {
            case "\"": quoted += "\\\""
            case "\\": quoted += "\\\\"
            case _ where character.value < 0x20 || character.value == 0x7F:
                let hex = String(character.value, radix: 16)
                quoted += "\\x" + (hex.count == 1 ? "0" + hex : hex)
            default: quoted.unicodeScalars.append(character)
            }
        }
        return quoted + "\""
    }
}
