/// Turns what DNS said into a node list, the same on every proxy whatever
/// order the server returned the records in (servers rotate them on purpose):
/// duplicates removed, sorted. The list's order is the ring's node order,
/// which decides ties between equal points and the order of `stats nodes`.
enum DiscoveredNodes {
    /// More nodes than this from one name is refused (the running list stays):
    /// a mistaken or hostile answer must not make the proxy open thousands of
    /// connections.
    static let limit = 512

    /// A/AAAA: every distinct address is a node on `port`, IPv4 first, then
    /// by address bytes. No name: the node is placed on the ring by
    /// `address:port`, as if it were listed under `nodes:`.
    static func fromAddresses(_ addresses: [IPAddress], port: UInt16) throws(DiscoveryFailure) -> [RingNode] {
        let distinct = Set(addresses).sorted()
        guard distinct.count <= limit else { throw DiscoveryFailure("\(distinct.count) addresses; at most \(limit) nodes") }
        return distinct.map { RingNode(host: $0.description, port: port) }
    }

    /// One SRV record, with the address its target resolved to.
    struct Endpoint: Hashable {
        let target: DNSName
        let port: UInt16
        let address: IPAddress
    }

    /// SRV: every record is a node at its target's address and its port,
    /// weight 1, named after its target, so the ring places it by name: a pod
    /// that comes back at a new address keeps its share of the keys and no
    /// other key moves. The name follows libmemcached's rule for a server
    /// given by name (the host alone on port 11211, else `host:port`), so a
    /// client listing the same targets by name places keys alike. Records
    /// naming one target and port are one node; records whose targets reach
    /// one address and port are one node too (the name that sorts first).
    static func fromServices(_ endpoints: [Endpoint]) throws(DiscoveryFailure) -> [RingNode] {
        let named: [(name: String, endpoint: Endpoint)] = Set(endpoints).map { endpoint in
            (name: ringName(endpoint), endpoint: endpoint)
        }.sorted { a, b in
            a.name != b.name ? a.name < b.name : a.endpoint.address < b.endpoint.address
        }
        var nodes: [RingNode] = []
        var seenNames: Set<String> = []
        var seenAddresses: Set<HostPortKey> = []
        for (name, endpoint) in named {
            // One name, several addresses (a target with two A records): the lowest.
            guard seenNames.insert(name).inserted,
                  seenAddresses.insert(HostPortKey(address: endpoint.address, port: endpoint.port)).inserted else { continue }
            nodes.append(RingNode(host: endpoint.address.description, port: endpoint.port, weight: 1, name: name))
        }
        guard nodes.count <= limit else { throw DiscoveryFailure("\(nodes.count) services; at most \(limit) nodes") }
        return nodes
    }

    /// The target alone on 11211, else `target:port`.
    static func ringName(_ endpoint: Endpoint) -> String {
        let target = endpoint.target.description
        return endpoint.port == 11211 ? target : target + ":" + String(endpoint.port)
    }

    private struct HostPortKey: Hashable {
        let address: IPAddress
        let port: UInt16
    }
}

/// Why a look-up gave no node list; the running list stays.
struct DiscoveryFailure: Error, Equatable, CustomStringConvertible {
    let reason: String
    init(_ reason: String) { self.reason = reason }
    var description: String { reason }
}
