@testable import CacheProxy
import Glibc
import Testing

@Suite struct AdminConfigurationTests {
    @Test(arguments: [
        ("9150", HostPort(host: "127.0.0.1", port: 9150)),
        (":9150", HostPort(host: "127.0.0.1", port: 9150)),
        ("0.0.0.0:9150", HostPort(host: "0.0.0.0", port: 9150)),
        ("[::1]:9150", HostPort(host: "::1", port: 9150)),
        ("metrics.internal:9150", HostPort(host: "metrics.internal", port: 9150)),
    ])
    func aBarePortMeansLoopback(text: String, address: HostPort) {
        #expect(HostPort(adminAddress: text) == address)
    }

    @Test(arguments: ["", ":", "0", ":0", "99999", "host", "[::1"])
    func refusesBadAdminAddresses(text: String) {
        #expect(HostPort(adminAddress: text) == nil)
    }

    @Test func readsTheAdminOptions() throws {
        let bare = try ConfigurationFile.parse("metrics_listen: :9150\nnodes: [127.0.0.1:1]\n")
        #expect(bare.metricsListen == HostPort(host: "127.0.0.1", port: 9150))
        let port = try ConfigurationFile.parse("metrics_listen: 9150\nnodes: [127.0.0.1:1]\n")
        #expect(port.metricsListen == HostPort(host: "127.0.0.1", port: 9150))
        var overrides = ProxyOverrides()
        overrides.metrics = ":9151"
        #expect(try overrides.apply(to: bare).metricsListen == HostPort(host: "127.0.0.1", port: 9151))
    }

    @Test(arguments: [
        ("metrics_listen: 0\nnodes: [127.0.0.1:1]\n",
         "f.yaml:1: metrics_listen: expected host:port or a port (127.0.0.1), found '0'"),
    ])
    func refusesBadAdminOptions(text: String, message: String) {
        #expect(throws: ConfigurationError(message)) { try ConfigurationFile.parse(text, path: "f.yaml") }
    }
}
