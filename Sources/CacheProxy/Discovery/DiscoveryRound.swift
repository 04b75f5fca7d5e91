import EventLoop

/// One look-up of the discovery name: the node list it gives now, or why it
/// gives none. All or nothing: a record whose target cannot be resolved fails
/// the whole look-up, so no proxy installs a list short of a node that another
/// proxy, asking a moment later, would see. Main loop only.
final class DiscoveryRound {
    typealias Completion = (Result<[RingNode], DiscoveryFailure>) -> Void

    private let settings: DiscoverySettings
    private let client: DNSClient
    private var completion: Completion?
    /// SRV: the targets whose addresses were not in the SRV answer, still to ask.
    private var targetsToAsk: [DNSName] = []
    private var targetsAsking = 0
    private var addressesOfTarget: [DNSName: IPAddress] = [:]
    private var services: [DNSRecordIndex.ServiceRecord] = []

    /// SRV targets asked at once.
    static let targetWindow = 32

    init(settings: DiscoverySettings, server: SocketAddress, loop: EventLoop, completion: @escaping Completion) {
        self.settings = settings
        self.client = DNSClient(server: server, loop: loop, timeoutMilliseconds: settings.timeoutMilliseconds)
        self.completion = completion
    }

    /// Starts the look-up; `completion` is called once, later, unless cancelled.
    func start() {
        switch settings.query {
        case .addresses(let text, let port):
            guard let name = DNSName(parsing: text) else { return finish(.failure(DiscoveryFailure("'\(text)' is not a DNS name"))) }
            lookUpAddresses(of: name) { [weak self] result in
                guard let self else { return }
                switch result {
                case .success(let addresses) where addresses.isEmpty:
                    finish(.failure(DiscoveryFailure("\(name) has no \(familyText) records")))
                case .success(let addresses):
                    finish(Result { () throws(DiscoveryFailure) in try DiscoveredNodes.fromAddresses(addresses, port: port) })
                case .failure(let failure):
                    finish(.failure(failure))
                }
            }
        case .service(let text):
            guard let name = DNSName(parsing: text) else { return finish(.failure(DiscoveryFailure("'\(text)' is not a DNS name"))) }
            client.ask(name, .srv) { [weak self] result in self?.servicesAnswered(name, result) }
        }
    }

    func cancel() {
        completion = nil
        client.cancel()
    }

    private func finish(_ result: Result<[RingNode], DiscoveryFailure>) {
        guard let completion else { return }
        self.completion = nil
        client.cancel()
        completion(result)
    }

    private var familyText: String {
        switch settings.family {
        case .auto: return "A or AAAA"
        case .ipv4: return "A"
        case .ipv6: return "AAAA"
        }
    }

    // MARK: Addresses

    /// The record types asked, in turn, until one has records.
    private var addressTypes: [DNSRecordType] {
        switch settings.family {
        case .auto: return [.a, .aaaa]
        case .ipv4: return [.a]
        case .ipv6: return [.aaaa]
        }
    }

    /// The addresses of `name`: A, then AAAA when `auto` found no A record
    /// (only when the server said so: a failed A question fails the look-up,
    /// and so does a name that does not exist).
    private func lookUpAddresses(of name: DNSName, types: ArraySlice<DNSRecordType>? = nil,
                                 then: @escaping (Result<[IPAddress], DiscoveryFailure>) -> Void) {
        let types = types ?? addressTypes[...]
        guard let type = types.first else { return then(.success([])) }
        client.ask(name, type) { [weak self] result in
            guard let self else { return }
            switch DiscoveryRound.usable(result, asking: name, type) {
            case .failure(let failure): then(.failure(failure))
            case .success(let index):
                do {
                    let found = try index.addresses(of: name, type: type)
                    if found.isEmpty, types.count > 1 { return lookUpAddresses(of: name, types: types.dropFirst(), then: then) }
                    then(.success(found))
                } catch {
                    then(.failure(DiscoveryFailure("\(name) \(type): \(error)")))
                }
            }
        }
    }

    /// The records of a response that answers, or why it does not.
    private static func usable(_ result: Result<DNSResponse, DNSQueryFailure>, asking name: DNSName,
                               _ type: DNSRecordType) -> Result<DNSRecordIndex, DiscoveryFailure> {
        switch result {
        case .failure(let failure):
            return .failure(DiscoveryFailure("\(name) \(type): \(failure)"))
        case .success(let response) where response.rcode == DNSResponse.nameError:
            return .failure(DiscoveryFailure("\(name) does not exist (NXDOMAIN)"))
        case .success(let response) where response.rcode != DNSResponse.noError:
            return .failure(DiscoveryFailure("\(name) \(type): the server answered \(rcodeName(response.rcode))"))
        case .success(let response):
            return .success(DNSRecordIndex(response))
        }
    }

    static func rcodeName(_ rcode: UInt8) -> String {
        switch rcode {
        case 1: return "FORMERR"
        case 2: return "SERVFAIL"
        case 3: return "NXDOMAIN"
        case 4: return "NOTIMP"
        case 5: return "REFUSED"
        default: return "RCODE \(rcode)"
        }
    }

    // MARK: SRV

    private func servicesAnswered(_ name: DNSName, _ result: Result<DNSResponse, DNSQueryFailure>) {
        let index: DNSRecordIndex
        switch DiscoveryRound.usable(result, asking: name, .srv) {
        case .failure(let failure): return finish(.failure(failure))
        case .success(let found): index = found
        }
        do {
            // A target of "." says the service is not offered (RFC 2782).
            services = try index.services(of: name).filter { !$0.target.isRoot }
        } catch {
            return finish(.failure(DiscoveryFailure("\(name) SRV: \(error)")))
        }
        guard !services.isEmpty else { return finish(.failure(DiscoveryFailure("\(name) has no SRV records"))) }
        guard services.count <= DiscoveredNodes.limit * 2 else {
            return finish(.failure(DiscoveryFailure("\(name) has \(services.count) SRV records; at most \(DiscoveredNodes.limit) nodes")))
        }
        // The server often sends the targets' addresses along (additional section).
        for target in Set(services.map(\.target)).sorted(by: { $0.wire.lexicographicallyPrecedes($1.wire) }) {
            var known: [IPAddress] = []
            do {
                for type in addressTypes where known.isEmpty { known = try index.addresses(of: target, type: type) }
            } catch {
                return finish(.failure(DiscoveryFailure("\(target): \(error)")))
            }
            if let lowest = known.min() { addressesOfTarget[target] = lowest } else { targetsToAsk.append(target) }
        }
        askTargets()
    }

    /// Asks for the targets' addresses, `targetWindow` at a time.
    private func askTargets() {
        guard completion != nil else { return }
        if targetsToAsk.isEmpty && targetsAsking == 0 { return servicesResolved() }
        while targetsAsking < DiscoveryRound.targetWindow, let target = targetsToAsk.popLast() {
            targetsAsking += 1
            lookUpAddresses(of: target) { [weak self] result in
                guard let self else { return }
                targetsAsking -= 1
                switch result {
                case .failure(let failure): return finish(.failure(failure))
                case .success(let addresses):
                    guard let lowest = addresses.min() else {
                        return finish(.failure(DiscoveryFailure("SRV target \(target) has no \(familyText) records")))
                    }
                    addressesOfTarget[target] = lowest
                    askTargets()
                }
            }
        }
    }

    private func servicesResolved() {
        var endpoints: [DiscoveredNodes.Endpoint] = []
        for service in services {
            guard let address = addressesOfTarget[service.target] else { continue }
            endpoints.append(.init(target: service.target, port: service.port, address: address))
        }
        finish(Result { () throws(DiscoveryFailure) in try DiscoveredNodes.fromServices(endpoints) })
    }
}
