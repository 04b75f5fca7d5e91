import Foundation
@testable import CacheProxy

/// One fixture written by scripts/ring-oracle: a node list, the ring mode, and
/// where the real library put each key (and, from libmemcached, its continuum).
struct RingFixture: Decodable {
    struct Node: Decodable {
        let host: String
        let port: UInt16
        let weight: UInt32
        let name: String?
    }

    /// A [key, node index] pair.
    struct Probe: Decodable {
        let key: String
        let owner: Int

        init(from decoder: Decoder) throws {
            var pair = try decoder.unkeyedContainer()
            key = try pair.decode(String.self)
            owner = try pair.decode(Int.self)
        }
    }

    let oracle: [String]
    let ring: String
    let nodes: [Node]
    /// Flattened (point, node index) pairs in libmemcached's sorted order.
    let continuum: [UInt32]?
    let sharedKeyCount: Int
    /// One base-36 digit per shared key: the node index it went to.
    let sharedKeyOwners: String
    let probes: [Probe]

    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    /// Fixture names, without ".json".
    static let names: [String] = {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return files.filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }.sorted()
    }()

    static let sharedKeys: [String] = {
        guard let text = try? String(contentsOf: directory.appendingPathComponent("keys.txt"), encoding: .utf8) else {
            return []
        }
        return text.split(separator: "\n").map(String.init)
    }()

    static func load(_ name: String) throws -> RingFixture {
        let data = try Data(contentsOf: directory.appendingPathComponent(name + ".json"))
        return try JSONDecoder().decode(RingFixture.self, from: data)
    }

    var mode: KetamaRing.Mode? {
        switch ring {
        case "libmemcachedWeighted": .libmemcachedWeighted
        case "twemproxy": .twemproxy
        case "libmemcachedClassic": .libmemcachedClassic
        default: nil
        }
    }

    var ringNodes: [RingNode] {
        nodes.map { RingNode(host: $0.host, port: $0.port, weight: $0.weight, name: $0.name) }
    }

    /// Every (key, expected node) the fixture holds: the shared keys, then the probes.
    var placements: [(key: String, owner: Int)] {
        let digits = Array(sharedKeyOwners.utf8)
        var all: [(key: String, owner: Int)] = []
        for (key, digit) in zip(Self.sharedKeys.prefix(sharedKeyCount), digits) {
            all.append((key, Int(String(UnicodeScalar(digit)), radix: 36)!))
        }
        all += probes.map { ($0.key, $0.owner) }
        return all
    }
}
