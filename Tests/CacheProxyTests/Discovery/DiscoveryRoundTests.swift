@testable import CacheProxy
import EventLoop
import Testing

/// A zone for the fake server: records by name and type; a name it does not
/// hold is NXDOMAIN. SRV answers carry no additional section, so the round
/// must ask for each target's address.
private func zone(_ records: [String: [(type: UInt16, data: [UInt8])]]) -> ([UInt8]) -> [[UInt8]] {
    { query in
        var reader = DNSWireReader(query, offset: 12)
        guard let name = try? reader.name(), let type = try? reader.u16() else { return [] }
        let id = UInt16(query[0]) << 8 | UInt16(query[1])
        guard let held = records[name.description] else {
            return [DNSPacket.response(name.description, type: type, id: id, flags: 3, answers: 0) { _ in }]
        }
        let matching = held.filter { $0.type == type }
        return [DNSPacket.response(name.description, type: type, id: id, answers: UInt16(matching.count)) { packet in
            for record in matching {
                packet.pointer(12)
                packet.record(type: record.type, data: record.data)
            }
        }]
    }
}

private func srv(_ port: UInt16, _ target: String) -> (type: UInt16, data: [UInt8]) {
    var data = DNSPacket()
    data.u16(0); data.u16(0); data.u16(port); data.name(target)
    return (33, data.bytes)
}

private func lookUp(_ settings: DiscoverySettings, zone records: [String: [(type: UInt16, data: [UInt8])]]) throws -> Result<[RingNode], DiscoveryFailure>? {
    var outcome: Result<[RingNode], DiscoveryFailure>?
    let keeper = Keeper()
    try onLoop { loop, done in
        let server = try FakeDNSServer(loop: loop)
        server.answer = zone(records)
        let round = DiscoveryRound(settings: settings, server: try SocketAddress(host: "127.0.0.1", port: server.port), loop: loop) { result in
            outcome = result
            done()
        }
        keeper.objects += [server, round]
        round.start()
    }
    return outcome
}

@Suite struct DiscoveryRoundTests {
    static let v6 = (type: UInt16(28), data: [UInt8](repeating: 0, count: 15) + [9])

    @Test func asksEachSRVTargetItsAddress() throws {
        var settings = DiscoverySettings(query: .service(name: "_mc._tcp.test"))
        settings.timeoutMilliseconds = 200
        let outcome = try lookUp(settings, zone: [
            "_mc._tcp.test": [srv(11211, "b.test"), srv(11300, "a.test"), srv(11211, "b.test")],
            "a.test": [(1, [10, 0, 0, 1])],
            "b.test": [(1, [10, 0, 0, 3]), (1, [10, 0, 0, 2])],
        ])
        #expect(try outcome?.get() == [
            RingNode(host: "10.0.0.1", port: 11300, weight: 1, name: "a.test:11300"),
            RingNode(host: "10.0.0.2", port: 11211, weight: 1, name: "b.test"),
        ])
    }

    @Test func oneTargetWithoutAnAddressFailsTheWholeLookUp() throws {
        var settings = DiscoverySettings(query: .service(name: "_mc._tcp.test"))
        settings.timeoutMilliseconds = 200
        let outcome = try lookUp(settings, zone: [
            "_mc._tcp.test": [srv(11211, "a.test"), srv(11211, "gone.test")],
            "a.test": [(1, [10, 0, 0, 1])],
        ])
        #expect(outcome == .failure(DiscoveryFailure("gone.test does not exist (NXDOMAIN)")))
    }

    @Test func autoAsksForAAAAOnlyWhenThereIsNoA() throws {
        var settings = DiscoverySettings(query: .addresses(name: "mc.test", port: 11211))
        settings.timeoutMilliseconds = 200
        #expect(try lookUp(settings, zone: ["mc.test": [Self.v6]])?.get() == [RingNode(host: "::9", port: 11211)])
        #expect(try lookUp(settings, zone: ["mc.test": [Self.v6, (1, [10, 0, 0, 1])]])?.get() == [RingNode(host: "10.0.0.1", port: 11211)])
        settings.family = .ipv4
        #expect(try lookUp(settings, zone: ["mc.test": [Self.v6]]) == .failure(DiscoveryFailure("mc.test has no A records")))
        settings.family = .ipv6
        #expect(try lookUp(settings, zone: ["mc.test": [Self.v6, (1, [10, 0, 0, 1])]])?.get() == [RingNode(host: "::9", port: 11211)])
    }

    @Test func aMissingNameIsAFailureNotAnEmptyList() throws {
        var settings = DiscoverySettings(query: .addresses(name: "mc.test", port: 11211))
        settings.timeoutMilliseconds = 200
        #expect(try lookUp(settings, zone: [:]) == .failure(DiscoveryFailure("mc.test does not exist (NXDOMAIN)")))
        #expect(try lookUp(settings, zone: ["mc.test": []]) == .failure(DiscoveryFailure("mc.test has no A or AAAA records")))
    }
}
