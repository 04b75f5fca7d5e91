@testable import CacheProxy
import Testing

@Suite struct DiscoveredNodesTests {
    @Test func addressesBecomeOneSortedListWhateverTheOrder() throws {
        let addresses: [IPAddress] = [.of("10.0.0.10"), .of("fd00::1"), .of("10.0.0.9"), .of("10.0.0.10"), .of("9.255.255.255")]
        let expected = [RingNode(host: "9.255.255.255", port: 11211), RingNode(host: "10.0.0.9", port: 11211),
                        RingNode(host: "10.0.0.10", port: 11211), RingNode(host: "fd00::1", port: 11211)]
        var generator = SplitMix(seed: 7)
        for _ in 0..<20 {
            let shuffled = addresses.shuffled(using: &generator)
            #expect(try DiscoveredNodes.fromAddresses(shuffled, port: 11211) == expected)
        }
    }

    @Test func tooManyAddressesAreRefused() throws {
        let many = (0...DiscoveredNodes.limit).map { IPAddress(bytes: [10, 1, UInt8($0 >> 8), UInt8($0 & 0xFF)])! }
        #expect(throws: DiscoveryFailure.self) { try DiscoveredNodes.fromAddresses(many, port: 1) }
        #expect(try DiscoveredNodes.fromAddresses(Array(many.dropLast()), port: 1).count == DiscoveredNodes.limit)
    }

    @Test func servicesAreNamedByTheirTargets() throws {
        let endpoints: [DiscoveredNodes.Endpoint] = [
            .init(target: .of("mc-1.mc.test"), port: 11211, address: .of("10.0.0.2")),
            .init(target: .of("mc-0.mc.test"), port: 11211, address: .of("10.0.0.3")),
            .init(target: .of("mc-2.mc.test"), port: 11300, address: .of("10.0.0.1")),
            .init(target: .of("mc-0.mc.test"), port: 11211, address: .of("10.0.0.3")),
        ]
        let expected = [
            RingNode(host: "10.0.0.3", port: 11211, weight: 1, name: "mc-0.mc.test"),
            RingNode(host: "10.0.0.2", port: 11211, weight: 1, name: "mc-1.mc.test"),
            RingNode(host: "10.0.0.1", port: 11300, weight: 1, name: "mc-2.mc.test:11300"),
        ]
        var generator = SplitMix(seed: 11)
        for _ in 0..<20 {
            #expect(try DiscoveredNodes.fromServices(endpoints.shuffled(using: &generator)) == expected)
        }
        // Placed by name, as libmemcached places a server given by that name.
        #expect(expected[0].pointKey == "mc-0.mc.test" && expected[2].pointKey == "mc-2.mc.test:11300")
    }

    @Test func twoTargetsAtOneAddressAreOneNode() throws {
        let endpoints: [DiscoveredNodes.Endpoint] = [
            .init(target: .of("b.test"), port: 11211, address: .of("10.0.0.2")),
            .init(target: .of("a.test"), port: 11211, address: .of("10.0.0.2")),
            .init(target: .of("a.test"), port: 11212, address: .of("10.0.0.2")),
        ]
        #expect(try DiscoveredNodes.fromServices(endpoints) == [
            RingNode(host: "10.0.0.2", port: 11211, weight: 1, name: "a.test"),
            RingNode(host: "10.0.0.2", port: 11212, weight: 1, name: "a.test:11212"),
        ])
    }
}

@Suite struct ResolvConfTests {
    @Test func takesTheFirstNumericNameserver() {
        let text = """
        # written by the cluster
        search default.svc.cluster.local svc.cluster.local
        nameserver fe80::1%eth0
        nameserver dns.example
        nameserver\t10.96.0.10
        nameserver 10.96.0.11
        options ndots:5
        """
        #expect(ResolvConf.firstNameserver(in: text) == HostPort(host: "10.96.0.10", port: 53))
        #expect(ResolvConf.firstNameserver(in: "nameserver ::1\n") == HostPort(host: "::1", port: 53))
        #expect(ResolvConf.firstNameserver(in: "search x\n") == nil)
        #expect(ResolvConf.firstNameserver(in: "") == nil)
    }

    @Test func theConfiguredServerWinsOverTheFile() throws {
        var settings = DiscoverySettings(query: .addresses(name: "mc.test", port: 1))
        settings.server = HostPort(host: "127.0.0.1", port: 5353)
        #expect(try settings.resolvedServer(resolvConf: "/nonexistent") == HostPort(host: "127.0.0.1", port: 5353))
        settings.server = nil
        #expect(throws: ConfigurationError.self) { try settings.resolvedServer(resolvConf: "/nonexistent") }
    }
}
