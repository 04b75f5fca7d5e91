/// What a response says about each name, indexed once: CNAME chains are
/// followed within the response (a recursive server answers `www CNAME lb`,
/// `lb A 10.0.0.1` in one message), never by asking again.
struct DNSRecordIndex {
    /// Links of a CNAME chain followed before giving up (loops included).
    static let chainLimit = 8

    private var byOwner: [DNSName: [DNSRecord.Data]] = [:]

    /// The records of the answer and additional sections.
    init(_ response: DNSResponse) {
        for record in response.answers + response.additionals {
            byOwner[record.name, default: []].append(record.data)
        }
    }

    /// Where `name` leads through CNAME records: `name` itself when it has none.
    func canonicalName(of name: DNSName) throws(DNSAnswerError) -> DNSName {
        var current = name
        for _ in 0...DNSRecordIndex.chainLimit {
            var next: DNSName?
            for case .cname(let target) in byOwner[current] ?? [] {
                // A name with a CNAME has no other CNAME (RFC 1034 §3.6.2).
                if let next, next != target { throw .ambiguousAlias(current) }
                next = target
            }
            guard let next else { return current }
            current = next
        }
        throw .aliasChainTooLong(name)
    }

    /// The addresses of `name` (at the end of its CNAME chain) of one family.
    func addresses(of name: DNSName, type: DNSRecordType) throws(DNSAnswerError) -> [IPAddress] {
        var found: [IPAddress] = []
        for data in byOwner[try canonicalName(of: name)] ?? [] {
            switch (data, type) {
            case (.a(let bytes), .a), (.aaaa(let bytes), .aaaa):
                if let address = IPAddress(bytes: bytes) { found.append(address) }
            default: continue
            }
        }
        return found
    }

    /// The SRV records of `name` (at the end of its CNAME chain).
    func services(of name: DNSName) throws(DNSAnswerError) -> [ServiceRecord] {
        (byOwner[try canonicalName(of: name)] ?? []).compactMap { data in
            guard case .srv(let priority, let weight, let port, let target) = data else { return nil }
            return ServiceRecord(priority: priority, weight: weight, port: port, target: target)
        }
    }

    struct ServiceRecord: Hashable, Sendable {
        let priority: UInt16
        let weight: UInt16
        let port: UInt16
        let target: DNSName
    }
}

/// A response that reads well but says something unusable.
enum DNSAnswerError: Error, Equatable, CustomStringConvertible {
    case ambiguousAlias(DNSName)
    case aliasChainTooLong(DNSName)

    var description: String {
        switch self {
        case .ambiguousAlias(let name): return "\(name) has more than one CNAME"
        case .aliasChainTooLong(let name):
            return "the CNAME chain from \(name) is longer than \(DNSRecordIndex.chainLimit) links, or loops"
        }
    }
}
