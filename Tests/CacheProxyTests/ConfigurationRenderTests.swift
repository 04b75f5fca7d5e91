import CacheProxy
import Foundation
import Testing

/// What --check-config prints: every option under the YAML's names, read back
/// by --config into the same configuration.
@Suite struct ConfigurationRenderTests {
    @Test func everyOptionIsWrittenAndReadsBack() throws {
        let text = """
        listen: 0.0.0.0:9000
        threads: 3
        replicas: 2
        hash: ketama_classic
        backend_connections: 2
        request_timeout_ms: 250
        connect_timeout_ms: 300
        failure_limit: 4
        probe_initial_ms: 50
        probe_max_ms: 800
        flap_window_s: 10
        write_policy: primary
        miss_failover: true
        replica_check: false
        flush_all: false
        warmup_s: 60
        membership_settle_ms: 5000
        rebalance: false
        rebalance_keys_per_s: 500
        watch_config: false
        log_level: warning
        item_size_max: 2m
        max_connections: 100
        client_reply_max: 1000
        request_line_max: 64k
        shutdown_grace_ms: 0
        metrics_listen: 127.0.0.1:9150
        admin_token_file: admin.token
        tls:
          cert: proxy.crt
          key: proxy.key
          ca: clients-ca.crt
          verify_clients: true
        node_tls:
          ca: nodes-ca.crt
          cert: proxy-client.crt
          key: proxy-client.key
        node_auth:
          user: proxy
          password_file: node.password
        nodes:
          - 10.0.0.1:11211:2 alpha
          - address: "[::1]:11212"
            name: "odd \\"name\\""
          - cache.example:11213
        """
        let configuration = try ConfigurationFile.parse(text)
        let rendered = ConfigurationFile.render(configuration)
        #expect(try ConfigurationFile.parse(rendered) == configuration)
        let keys = rendered.split(separator: "\n").filter { !$0.hasPrefix(" ") }.map { line in
            String(line.drop(while: { $0 == "#" || $0 == " " }).prefix(while: { $0 != ":" }))
        }
        // Every key of the file above, and the options it leaves out.
        let written = Set(text.split(separator: "\n").filter { !$0.hasPrefix(" ") }.map { String($0.prefix(while: { $0 != ":" })) })
        #expect(Set(keys) == written.union(["admin_token_protects_metrics", "key_hash"]))
        let twemproxy = try ConfigurationFile.parse("hash: twemproxy\nkey_hash: fnv1a_64\nreplicas: 2\nnodes: [10.0.0.1:1 a, 10.0.0.2:1 b]")
        #expect(ConfigurationFile.render(twemproxy).contains("key_hash: fnv1a_64\n"))
        #expect(try ConfigurationFile.parse(ConfigurationFile.render(twemproxy)) == twemproxy)
        #expect(rendered.contains("client_reply_max: 1000\n") && rendered.contains("request_line_max: 64k\n"))
    }

    @Test func theExampleFileReadsBackUnchanged() throws {
        let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../examples/proxy.yaml").standardizedFileURL.path
        let configuration = try ConfigurationFile.parse(String(contentsOfFile: example, encoding: .utf8))
        #expect(try ConfigurationFile.parse(ConfigurationFile.render(configuration)) == configuration)
    }

    @Test func theTokenIsNeverPrinted() throws {
        let secret = "0123456789abcdef-secret"
        let configuration = try ConfigurationFile.parse("admin_token: \(secret)\nnodes: [127.0.0.1:1]")
        let rendered = ConfigurationFile.render(configuration)
        #expect(!rendered.contains(secret))
        #expect(rendered.contains("# admin_token: set (not shown)"))
        #expect(rendered.contains("# metrics_listen: not set"))
    }

    @Test func replicasShowTheCopiesInEffect() throws {
        let rendered = ConfigurationFile.render(try ConfigurationFile.parse("replicas: 3\nnodes: [127.0.0.1:1, 127.0.0.1:2]"))
        #expect(rendered.contains("replicas: 2    # 3 configured; at most one copy per node\n"))
        let defaulted = ConfigurationFile.render(try ConfigurationFile.parse("nodes: [127.0.0.1:1, 127.0.0.1:2]"))
        #expect(defaulted.contains("replicas: 2\n"))
    }
}
