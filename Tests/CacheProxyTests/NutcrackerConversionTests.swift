import CacheProxy
import Testing

@Suite struct NutcrackerConversionTests {
    /// The shape of nutcracker's own example file: a redis pool, a memcache pool
    /// with its defaults, one with a hash the proxy does not have.
    private let example = """
    alpha:
      listen: 127.0.0.1:22121
      hash: fnv1a_64
      distribution: ketama
      redis: true
      servers:
       - 127.0.0.1:6379:1
    gamma:
      listen: 127.0.0.1:22123
      distribution: ketama
      timeout: 400
      backlog: 1024
      auto_eject_hosts: true
      server_retry_timeout: 2000
      server_failure_limit: 3
      servers:
       - 127.0.0.1:11212:1 first
       - 127.0.0.1:11213:3 second
    omega:
      listen: 127.0.0.1:22125
      hash: hsieh
      servers:
       - 127.0.0.1:11214:1
    """

    @Test func convertsEachPoolOrSaysWhyNot() throws {
        let pools = try NutcrackerConversion.convert(example)
        #expect(pools.map(\.name) == ["alpha", "gamma", "omega"])
        #expect(pools[0].yaml == nil && pools[0].refusals == ["redis: true: the proxy speaks memcached's protocol only"])
        #expect(pools[2].yaml == nil && pools[2].refusals.first?.hasPrefix("hash hsieh:") == true)

        let gamma = try ConfigurationFile.parse(try #require(pools[1].yaml))
        #expect(gamma.listen == HostPort(host: "127.0.0.1", port: 22123))
        #expect(gamma.hashMode == .twemproxy && gamma.keyHash == .fnv1a_64, "nutcracker's default hash")
        #expect(gamma.requestTimeoutMilliseconds == 400)
        #expect(gamma.failureLimit == 3)
        #expect(gamma.probeInitialMilliseconds == 2000 && gamma.probeMaxMilliseconds == 2000, "a fixed retry interval")
        #expect(gamma.effectiveReplicas == 1)
        #expect(gamma.nodes == [
            RingNode(host: "127.0.0.1", port: 11212, weight: 1, name: "first"),
            RingNode(host: "127.0.0.1", port: 11213, weight: 3, name: "second"),
        ])
        #expect(pools[1].yaml?.contains("# backlog: 1024 is left out") == true)
    }

    @Test(arguments: [
        ("p:\n  timeout: -1\n  servers: [127.0.0.1:1:1]\n", nil),
        ("p:\n  servers: [127.0.0.1:1:1]\n  server_failure_limit: 0\n",
         "converted YAML:2: failure_limit: expected an integer from 1 to 1000, found '0'"),
        ("p:\n  distribution: random\n  servers: [127.0.0.1:1:1]\n",
         "distribution random: the proxy places keys by ketama only, so keys would move"),
        ("p:\n  listen: 127.0.0.1:1\n", "no servers"),
        ("p:\n  servers: [/var/run/mc.sock:1]\n", "server /var/run/mc.sock:1: a unix socket"),
        ("p:\n  auto_ejct_hosts: true\n  servers: [127.0.0.1:1:1]\n", "auto_ejct_hosts: an option the converter does not know"),
    ] as [(String, String?)])
    func refusesWhatCannotBeServedTheSameWay(text: String, refusal: String?) throws {
        let pools = try NutcrackerConversion.convert(text)
        try #require(pools.count == 1)
        let pool = pools[0]
        if let refusal {
            #expect(pool.yaml == nil && pool.refusals == [refusal])
        } else {
            // No timeout in nutcracker means none at all; the proxy keeps its default.
            let converted = try ConfigurationFile.parse(try #require(pool.yaml))
            #expect(converted.requestTimeoutMilliseconds == ProxyConfiguration().requestTimeoutMilliseconds)
        }
    }

    @Test func refusesAFileThatIsNotMappingOfPools() {
        #expect(throws: ConfigurationError.self) { try NutcrackerConversion.convert("- a\n- b\n") }
        #expect(throws: ConfigurationError.self) { try NutcrackerConversion.convert("a: [unclosed\n") }
    }
}
