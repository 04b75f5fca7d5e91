import EventLoop

/// What every worker thread reads and none writes: the configuration, resolved
/// addresses, key layout, the zipf table and the value pattern.
final class Workload: Sendable {
    let configuration: BenchConfiguration
    let addresses: [SocketAddress]
    let keyLayout: KeyLayout
    let zipf: ZipfDistribution?
    let values: ValuePattern
    let isOpenLoop: Bool

    init(configuration: BenchConfiguration, addresses: [SocketAddress]) {
        self.configuration = configuration
        self.addresses = addresses
        keyLayout = configuration.keyLayout
        zipf = configuration.keyPattern == .zipf
            ? ZipfDistribution(keyCount: configuration.keyCount, exponent: configuration.zipfExponent) : nil
        values = ValuePattern(sizes: configuration.valueSizes)
        isOpenLoop = configuration.rate != nil
    }

    /// The keys connection `globalIndex` writes during `--fill`: every server gets
    /// every key, split evenly over the connections to that server.
    func fillRange(globalIndex: Int) -> Range<UInt64> {
        let serverCount = addresses.count
        let server = globalIndex % serverCount
        let position = UInt64(globalIndex / serverCount)
        let connectionsToServer = UInt64((configuration.totalConnections - server + serverCount - 1) / serverCount)
        let keys = configuration.keyCount
        func boundary(_ part: UInt64) -> UInt64 {
            connectionsToServer.dividingFullWidth(keys.multipliedFullWidth(by: part)).quotient
        }
        return boundary(position)..<boundary(position + 1)
    }
}
