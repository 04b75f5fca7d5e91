import ArgumentParser
import CacheProxy
import MemcacheProtocol
import Testing

/// The proxy's command line: flags, --version, --help at 80 columns, and the
/// configuration --check-config prints.
@Suite struct ProxyCommandTests {
    @Test(arguments: ["--metrics-listen", "--metrics"])
    func metricsListenAndItsOlderNameAreOneOption(flag: String) throws {
        let command = try ProxyCommand.parse(["--node", "127.0.0.1:1", flag, "9150"])
        let configuration = try command.overrides.apply(to: ProxyConfiguration())
        #expect(configuration.metricsListen == HostPort(host: "127.0.0.1", port: 9150))
    }

    @Test func everyFlagReachesTheConfiguration() throws {
        let command = try ProxyCommand.parse([
            "--listen", "127.0.0.1:7000", "--node", "127.0.0.1:1", "--node", "127.0.0.1:2:3 b",
            "--replicas", "1", "--threads", "3", "--hash", "twemproxy", "--metrics-listen", "127.0.0.1:9151",
            "--log-level", "debug", "--check-config",
        ])
        let c = try command.overrides.apply(to: ProxyConfiguration())
        #expect(c.listen == HostPort(host: "127.0.0.1", port: 7000))
        #expect(c.nodes == [RingNode(host: "127.0.0.1", port: 1), RingNode(host: "127.0.0.1", port: 2, weight: 3, name: "b")])
        #expect(c.effectiveReplicas == 1 && c.threads == 3 && c.hashMode == .twemproxy)
        #expect(c.metricsListen == HostPort(host: "127.0.0.1", port: 9151))
        #expect(c.logLevel == .debug)
        let wrong = try ProxyCommand.parse(["--node", "127.0.0.1:1", "--log-level", "loud"])
        #expect(throws: ConfigurationError.self) { try wrong.overrides.apply(to: ProxyConfiguration()) }
    }

    @Test func badMetricsAddressNamesTheFlag() throws {
        let command = try ProxyCommand.parse(["--node", "127.0.0.1:1", "--metrics", "nowhere"])
        #expect(throws: ConfigurationError("--metrics-listen: expected host:port or a port (127.0.0.1)")) {
            try command.overrides.apply(to: ProxyConfiguration())
        }
    }

    @Test func versionIsTheRelease() {
        #expect(ProxyCommand.configuration.version == "memcluster-proxy \(MemclusterVersion.release)-proxy")
        do {
            _ = try ProxyCommand.parseAsRoot(["--version"])
            Issue.record("--version did not exit")
        } catch {
            #expect(ProxyCommand.exitCode(for: error) == .success)
            #expect(ProxyCommand.fullMessage(for: error) == "memcluster-proxy 1.6.18-memcluster-proxy")
        }
    }

    @Test func helpFitsEightyColumns() {
        let help = ProxyCommand.helpMessage(columns: 80)
        for line in help.split(separator: "\n") {
            #expect(line.count <= 80, "over 80 columns: \(line)")
        }
        for option in ["--config", "--listen", "--node", "--replicas", "--threads", "--hash", "--metrics-listen",
                       "--metrics", "--admin-token-file", "--check-config", "--version"] {
            #expect(help.contains(option), "\(option) missing from --help")
        }
        // The paragraphs are wrapped by ArgumentParser, not by line breaks in
        // the source: no line of the discussion is a lone word or two.
        for line in help.split(separator: "\n") where !line.hasPrefix(" ") && line.split(separator: " ").count < 3 {
            #expect(line.hasSuffix(":") || line.hasPrefix("memcluster"), "stray short line: \(line)")
        }
    }
}
