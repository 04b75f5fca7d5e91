import CacheProxy
import Testing

@Suite struct ConfigurationFileTests {
    @Test func readsEveryOption() throws {
        let text = """
        listen: 0.0.0.0:9000
        threads: 3
        replicas: 3
        hash: twemproxy
        key_hash: fnv1a_64
        backend_connections: 2
        request_timeout_ms: 250
        connect_timeout_ms: 300
        failure_limit: 4
        probe_initial_ms: 50
        probe_max_ms: 800
        flap_window_s: 10
        write_policy: primary
        miss_failover: true
        flush_all: false
        warmup_s: 60
        membership_settle_ms: 5000
        item_size_max: 2m
        max_connections: 100
        metrics_listen: 127.0.0.1:9150
        admin_token: 0123456789abcdef
        admin_token_protects_metrics: true
        nodes:
          - 10.0.0.1:11211:2 alpha
          - address: "[::1]:11212"
            weight: 3
            name: beta
          - cache.example:11213
        """
        let configuration = try ConfigurationFile.parse(text)
        #expect(configuration.listen == HostPort(host: "0.0.0.0", port: 9000))
        #expect(configuration.threads == 3)
        #expect(configuration.effectiveReplicas == 3)
        #expect(configuration.hashMode == .twemproxy && configuration.keyHash == .fnv1a_64)
        #expect(configuration.backendConnections == 2)
        #expect(configuration.requestTimeoutMilliseconds == 250)
        #expect(configuration.connectTimeoutMilliseconds == 300)
        #expect(configuration.failureLimit == 4)
        #expect(configuration.probeInitialMilliseconds == 50 && configuration.probeMaxMilliseconds == 800)
        #expect(configuration.flapWindowSeconds == 10)
        #expect(configuration.writePolicy == .primary)
        #expect(configuration.missFailover && !configuration.flushAllEnabled)
        #expect(configuration.warmupSeconds == 60)
        #expect(configuration.membershipSettleMilliseconds == 5000)
        #expect(configuration.itemSizeMax == 2 << 20)
        #expect(configuration.maxConnections == 100)
        #expect(configuration.metricsListen == HostPort(host: "127.0.0.1", port: 9150))
        #expect(configuration.adminToken == AdminToken("0123456789abcdef"))
        #expect(configuration.adminTokenProtectsMetrics)
        #expect(configuration.nodes == [
            RingNode(host: "10.0.0.1", port: 11211, weight: 2, name: "alpha"),
            RingNode(host: "::1", port: 11212, weight: 3, name: "beta"),
            RingNode(host: "cache.example", port: 11213),
        ])
    }

    @Test func defaultsNeedOnlyNodes() throws {
        let configuration = try ConfigurationFile.parse("nodes: [127.0.0.1:1, 127.0.0.1:2]")
        #expect(configuration.listen == HostPort(host: "127.0.0.1", port: 22121))
        #expect(configuration.effectiveReplicas == 2)
        #expect(configuration.hashMode == .libmemcachedWeighted)
        #expect(configuration.writePolicy == .all)
        #expect(configuration.requestTimeoutMilliseconds == 1000)
        #expect(configuration.membershipSettleMilliseconds == 2000)
        let single = try ConfigurationFile.parse("nodes: [127.0.0.1:1]")
        #expect(single.effectiveReplicas == 1)
    }

    @Test(arguments: [
        ("nodes:\n  - 127.0.0.1:1\n  - nonsense\n", "f.yaml:3: nodes[1]: expected host:port[:weight] [name], found 'nonsense'"),
        ("nodez:\n  - 127.0.0.1:1\n", "f.yaml:1: unknown option 'nodez' (see examples/proxy.yaml for the options)"),
        ("threads: many\nnodes: [127.0.0.1:1]\n", "f.yaml:1: threads: expected an integer from 1 to 64, found 'many'"),
        ("write_policy: some\nnodes: [127.0.0.1:1]\n", "f.yaml:1: write_policy: expected all or primary, found 'some'"),
        ("nodes:\n  - address: 127.0.0.1:1\n    weigth: 2\n", "f.yaml:3: nodes[0]: unknown option 'weigth' (address, weight, name)"),
        ("nodes:\n  - 127.0.0.1:1\n  - 127.0.0.1:1\n", "f.yaml:3: nodes[1]: 127.0.0.1:1 is already nodes[0]"),
        ("listen: 127.0.0.1:1\n", "f.yaml: no nodes: list the cache nodes under 'nodes:', or name them with 'discovery:'"),
        ("nodes: [127.0.0.1:1\n", "f.yaml:2:1: did not find expected ',' or ']'"),
        ("- a\n- b\n", "f.yaml:1: the configuration must be a mapping of options (listen:, nodes:, ...)"),
        ("key_hash: fnv1a_64\nnodes: [127.0.0.1:1]\n",
         "f.yaml:1: key_hash: only with hash: twemproxy (libmemcached's modes fix their own key hash)"),
        ("hash: twemproxy\nkey_hash: hsieh\nnodes: [127.0.0.1:1]\n",
         "f.yaml:2: key_hash: expected one of md5, one_at_a_time, fnv1_64, fnv1a_64, fnv1_32, fnv1a_32, crc32, crc32a, murmur, found 'hsieh'"),
    ])
    func refusesBadFilesNamingTheLine(text: String, message: String) {
        #expect(throws: ConfigurationError(message)) { try ConfigurationFile.parse(text, path: "f.yaml") }
    }

    @Test func flagsOverrideTheFile() throws {
        var overrides = ProxyOverrides()
        overrides.listen = "127.0.0.1:7000"
        overrides.nodes = ["127.0.0.1:8001", "127.0.0.1:8002:2 b"]
        overrides.replicas = 1
        let configuration = try overrides.apply(to: ConfigurationFile.parse("nodes: [127.0.0.1:1]\nreplicas: 2"))
        #expect(configuration.listen.port == 7000)
        #expect(configuration.nodes.map(\.port) == [8001, 8002])
        #expect(configuration.nodes[1].weight == 2 && configuration.nodes[1].name == "b")
        #expect(configuration.effectiveReplicas == 1)
        #expect(throws: ConfigurationError.self) { try ProxyOverrides().apply(to: ProxyConfiguration()) }
    }

    @Test(arguments: [
        ("127.0.0.1:11211", HostPort(host: "127.0.0.1", port: 11211)),
        ("[::1]:22121", HostPort(host: "::1", port: 22121)),
        ("cache:1", HostPort(host: "cache", port: 1)),
    ])
    func parsesAddresses(text: String, address: HostPort) {
        #expect(HostPort(parsing: text) == address)
    }

    @Test(arguments: ["", ":1", "host", "host:0", "host:99999", "[::1", "[::1]x"])
    func refusesBadAddresses(text: String) {
        #expect(HostPort(parsing: text) == nil)
    }
}
