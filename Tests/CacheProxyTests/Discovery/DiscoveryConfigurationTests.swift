@testable import CacheProxy
import Testing

@Suite struct DiscoveryConfigurationTests {
    @Test func readsAddressDiscovery() throws {
        let configuration = try ConfigurationFile.parse("""
        discovery:
          name: memcache.default.svc.cluster.local
          port: 11211
          family: ipv6
          refresh_s: 2
          timeout_ms: 250
          server: 10.96.0.10
        """)
        var expected = DiscoverySettings(query: .addresses(name: "memcache.default.svc.cluster.local", port: 11211))
        expected.family = .ipv6
        expected.refreshSeconds = 2
        expected.timeoutMilliseconds = 250
        expected.server = HostPort(host: "10.96.0.10", port: 53)
        #expect(configuration.discovery == expected)
        #expect(configuration.nodes.isEmpty)
    }

    @Test func readsServiceDiscoveryWithDefaults() throws {
        let configuration = try ConfigurationFile.parse("discovery:\n  srv: _memcache._tcp.mc.test\n  server: \"[::1]:5353\"\n")
        var expected = DiscoverySettings(query: .service(name: "_memcache._tcp.mc.test"))
        expected.server = HostPort(host: "::1", port: 5353)
        #expect(configuration.discovery == expected)
        #expect(expected.refreshSeconds == 5 && expected.family == .auto && expected.timeoutMilliseconds == 1000)
        let bareV6 = try ConfigurationFile.parse("discovery:\n  srv: _m._tcp.test\n  server: \"::1\"\n")
        #expect(bareV6.discovery?.server == HostPort(host: "::1", port: 53))
    }

    @Test(arguments: [
        ("nodes: [127.0.0.1:1]\ndiscovery:\n  name: mc.test\n  port: 1\n", "f.yaml:2: discovery: give nodes: or discovery:, not both"),
        ("discovery:\n  name: mc.test\n", "f.yaml:2: discovery: name: needs port: (the port every address serves on)"),
        ("discovery:\n  srv: _m._tcp.test\n  port: 1\n", "f.yaml:2: discovery: srv: takes each node's port from its record; leave port: out"),
        ("discovery:\n  srv: _m._tcp.test\n  name: mc.test\n  port: 1\n",
         "f.yaml:2: discovery: give name: (A/AAAA records) or srv: (SRV records), not both"),
        ("discovery:\n  refresh_s: 5\n", "f.yaml:2: discovery: name: and port:, or srv:, is required"),
        ("discovery: mc.test\n", "f.yaml:1: discovery: expected a mapping (name:, port: or srv:, ...)"),
        ("discovery:\n  name: mc..test\n  port: 1\n",
         "f.yaml:2: discovery.name: expected a DNS name (labels of 1 to 63 characters, 253 in all), found 'mc..test'"),
        ("discovery:\n  name: mc.test\n  port: 1\n  server: dns.example\n",
         "f.yaml:4: discovery.server: expected a numeric address, with a port or not (127.0.0.1:53, [::1]:53, 10.96.0.10), found 'dns.example'"),
        ("discovery:\n  name: mc.test\n  port: 1\n  refresh_s: 0\n", "f.yaml:4: discovery.refresh_s: expected an integer from 1 to 3600, found '0'"),
        ("discovery:\n  name: mc.test\n  port: 1\n  family: both\n", "f.yaml:4: discovery.family: expected auto, ipv4 or ipv6, found 'both'"),
        ("discovery:\n  name: mc.test\n  port: 1\n  ttl: 5\n",
         "f.yaml:4: discovery: unknown option 'ttl' (name, port, srv, family, refresh_s, timeout_ms, server)"),
        ("discovery:\n  name: mc.test\n  port: 70000\n", "f.yaml:3: discovery.port: expected an integer from 1 to 65535, found '70000'"),
    ])
    func refusesBadDiscoveryNamingTheLine(text: String, message: String) {
        #expect(throws: ConfigurationError(message)) { try ConfigurationFile.parse(text, path: "f.yaml") }
    }

    @Test func nodeFlagsReplaceDiscovery() throws {
        var overrides = ProxyOverrides()
        overrides.nodes = ["127.0.0.1:8001"]
        let base = try ConfigurationFile.parse("discovery:\n  name: mc.test\n  port: 1\n  server: 127.0.0.1\n")
        let configuration = try overrides.apply(to: base)
        #expect(configuration.discovery == nil && configuration.nodes.count == 1)
        // Without flags, discovery stands with no node yet: the proxy looks them up.
        let discovering = try ProxyOverrides().apply(to: base)
        #expect(discovering.discovery?.server == HostPort(host: "127.0.0.1", port: 53) && discovering.nodes.isEmpty)
    }

    /// --check-config prints discovery: in place of nodes:, and reads back.
    @Test(arguments: [
        "discovery:\n  name: mc.test\n  port: 11211\n  family: ipv4\n  refresh_s: 2\n  timeout_ms: 300\n  server: 10.96.0.10\n",
        "replicas: 3\ndiscovery:\n  srv: _memcache._tcp.mc.test\n  server: \"[::1]:5353\"\n",
        "discovery:\n  srv: _memcache._tcp.mc.test\n",
    ])
    func discoveryIsRenderedAndReadsBack(text: String) throws {
        let configuration = try ConfigurationFile.parse(text)
        let rendered = ConfigurationFile.render(configuration)
        #expect(try ConfigurationFile.parse(rendered) == configuration)
        #expect(rendered.contains("\ndiscovery:\n") && !rendered.contains("\nnodes:"))
        // The replica count is not settled before the name gives nodes.
        #expect(rendered.contains(configuration.replicas == nil ? "# replicas: 2 when the name gives" : "replicas: 3 "))
    }

    @Test func memclusterAdminLeavesADiscoveryFileAlone() {
        let file = "listen: 127.0.0.1:22121\ndiscovery:\n  name: mc.test\n  port: 11211\n"
        let refusal = ConfigurationError("the file names its nodes by DNS (discovery: mc.test); change that name's records instead")
        #expect(throws: refusal) { try NodeListEdit.adding("10.0.0.4:11211", to: file) }
        #expect(throws: refusal) { try NodeListEdit.removing(HostPort(host: "10.0.0.4", port: 11211), from: file) }
    }
}
