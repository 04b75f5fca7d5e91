import Testing
@testable import CacheProxy

/// Replays what the real libmemcached, pylibmc and nutcracker did
/// (scripts/ring-oracle): every key must land on the same node, every one.
@Suite struct OracleFixtureTests {
    @Test func fixturesArePresent() throws {
        #expect(RingFixture.sharedKeys.count == 5000)
        #expect(RingFixture.names.count >= 25)
        let modes = try Set(RingFixture.names.map { try RingFixture.load($0).ring })
        #expect(modes == ["libmemcachedWeighted", "twemproxy", "libmemcachedClassic"])
    }

    @Test(arguments: RingFixture.names)
    func placesEveryKeyLikeTheOracle(fixture name: String) throws {
        let fixture = try RingFixture.load(name)
        let mode = try #require(fixture.mode)
        let ring = try KetamaRing(nodes: fixture.ringNodes, mode: mode)
        let placements = fixture.placements
        #expect(placements.count == fixture.sharedKeyCount + fixture.probes.count)
        #expect(fixture.sharedKeyOwners.count == fixture.sharedKeyCount)

        var wrong: [String] = []
        for (key, expected) in placements {
            let got = ring.owner(of: key)
            if got != expected { wrong.append("\(key): oracle \(expected), ring \(got)") }
        }
        #expect(wrong.isEmpty, "\(wrong.count) of \(placements.count) keys misplaced, e.g. \(wrong.prefix(5))")
    }

    @Test(arguments: RingFixture.names)
    func buildsLibmemcachedsExactContinuum(fixture name: String) throws {
        let fixture = try RingFixture.load(name)
        guard let continuum = fixture.continuum else { return }  // nutcracker does not show its own
        let ring = try KetamaRing(nodes: fixture.ringNodes, mode: try #require(fixture.mode))
        let points = stride(from: 0, to: continuum.count, by: 2).map { continuum[$0] }
        let owners = stride(from: 1, to: continuum.count, by: 2).map { continuum[$0] }
        #expect(ring.points.count == points.count)
        #expect(ring.points == points)
        #expect(ring.owners == owners)
        #expect(ring.pointCounts.reduce(0, +) == points.count)
    }
}
