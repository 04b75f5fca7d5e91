import Foundation
import Testing
@testable import LoadGenerator

/// The load generator in-process against a real memcached (CI installs it).
@Suite(.serialized, .enabled(if: MemcachedProcess.isInstalled,
                             "/usr/bin/memcached is missing: install the memcached package to run the load generator against it"))
struct MemcachedIntegrationTests {
    @Test func fillThenMeasureHitsEveryKeyWithoutErrors() throws {
        let server = try MemcachedProcess()
        defer { server.stop() }
        var configuration = BenchConfiguration()
        configuration.servers = [server.address]
        configuration.connectionsPerThread = 8
        configuration.keyCount = 2000
        configuration.bound = .requests(20_000)
        configuration.fill = true
        configuration.verify = true
        configuration.seed = 1
        let report = try LoadGenerator(configuration: configuration).run()
        #expect(report.ops == 20_000)
        #expect(report.errors.total == 0 && report.errors.unfinishedRequests == 0)
        #expect(report.sets == 2_000 && report.gets == 18_000)
        #expect(report.hits == 18_000 && report.misses == 0 && report.hitRatio == 1)
        #expect(report.fill?.stored == 2000 && report.fill?.failed == 0)
        #expect(report.latencyUs.all.count == 20_000 && report.latencyUs.all.p50 > 0)
        #expect(report.bytes.sent > 0 && report.bytes.received > 0)
        #expect(report.clientCpu.usPerRequest > 0)
        #expect(report.servers.first?.version?.hasPrefix("1.") == true)
        let object = try jsonObject(report)
        #expect(expectedReportKeys.isSubset(of: Set(object.keys)))
        #expect(object["fill"] != nil)
    }

    @Test func metaMultiGetsOverTwoThreadsAndTwoServersVerify() throws {
        let first = try MemcachedProcess()
        defer { first.stop() }
        let second = try MemcachedProcess()
        defer { second.stop() }
        var configuration = BenchConfiguration()
        configuration.servers = [first.address, second.address]
        configuration.threads = 2
        configuration.connectionsPerThread = 3
        configuration.pipeline = 4
        configuration.keyCount = 500
        configuration.valueSizes = try ValueSizeRange(minimum: 1, maximum: 3000)
        configuration.multiget = 7
        configuration.wireProtocol = .meta
        configuration.bound = .requests(4_000)
        configuration.fill = true
        configuration.verify = true
        let report = try LoadGenerator(configuration: configuration).run()
        #expect(report.ops == 4_000)
        #expect(report.errors.total == 0)
        #expect(report.getKeys == report.gets * 7)
        #expect(report.misses == 0 && report.hits == report.getKeys)
        #expect(report.fill?.stored == 1000)    // every key on both servers
    }

    @Test func getsOfUnwrittenKeysAreMisses() throws {
        let server = try MemcachedProcess()
        defer { server.stop() }
        var configuration = BenchConfiguration()
        configuration.servers = [server.address]
        configuration.connectionsPerThread = 4
        configuration.ratio = try OperationRatio(sets: 0, gets: 1)
        configuration.multiget = 3
        configuration.bound = .requests(1_000)
        let report = try LoadGenerator(configuration: configuration).run()
        #expect(report.gets == 1_000 && report.misses == 3_000 && report.hits == 0)
        #expect(report.errors.total == 0)
    }

    @Test func openLoopSendsWhatItScheduled() throws {
        let server = try MemcachedProcess()
        defer { server.stop() }
        var configuration = BenchConfiguration()
        configuration.servers = [server.address]
        configuration.threads = 2
        configuration.connectionsPerThread = 2
        configuration.rate = 4_000
        configuration.bound = .requests(1_000)
        let report = try LoadGenerator(configuration: configuration).run()
        let open = try #require(report.openLoop)
        #expect(open.scheduled == 1_000 && open.unsent == 0)
        #expect(open.dispatchLagUs.count == 1_000)
        #expect(report.ops == 1_000 && report.errors.total == 0)
        // 1000 requests at 4000/s take a quarter of a second, not less.
        #expect(report.durationSeconds > 0.24 && report.durationSeconds < 2)
    }

    @Test func theCommandLineWritesItsJSONReport() throws {
        let server = try MemcachedProcess()
        defer { server.stop() }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("memcluster-bench-\(server.port).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let command = try BenchCommand.parse([
            "--server", server.address.description, "-c", "2", "--requests", "200", "--fill", "--keys", "100",
            "--no-progress", "--json", path,
        ])
        try command.run()
        let object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        #expect(object["ops"] as? Int == 200)
        #expect(object["hit_ratio"] as? Double == 1)
        #expect((object["errors"] as? [String: Any])?["total"] as? Int == 0)
    }
}

@Suite struct SetupFailureTests {
    @Test func aRefusedConnectionIsASetupErrorNamingTheServer() throws {
        let port = try freeLoopbackPort()
        var configuration = BenchConfiguration()
        configuration.servers = [ServerAddress(host: "127.0.0.1", port: port)]
        configuration.connectionsPerThread = 2
        configuration.bound = .requests(10)
        let error = #expect(throws: LoadGeneratorError.self) { try LoadGenerator(configuration: configuration).run() }
        #expect(error?.message == "connect to 127.0.0.1:\(port): Connection refused")
    }

    @Test func aServerThatNeverAnswersTimesOut() throws {
        let silent = try FakeServer { _ in "" }
        var configuration = BenchConfiguration()
        configuration.servers = [ServerAddress(host: "127.0.0.1", port: silent.port)]
        configuration.connectionsPerThread = 1
        configuration.bound = .requests(10)
        configuration.timeout = 0.2
        let error = #expect(throws: LoadGeneratorError.self) { try LoadGenerator(configuration: configuration).run() }
        #expect(error?.message == "127.0.0.1:\(silent.port) did not answer the probe within 0.2 s")
    }

    @Test func aServerThatIsNotMemcachedIsNamed() throws {
        let http = try FakeServer { _ in "HTTP/1.1 400 Bad Request\r\n" }
        var configuration = BenchConfiguration()
        configuration.servers = [ServerAddress(host: "127.0.0.1", port: http.port)]
        configuration.connectionsPerThread = 1
        configuration.bound = .requests(10)
        let error = #expect(throws: LoadGeneratorError.self) { try LoadGenerator(configuration: configuration).run() }
        #expect(error?.message.contains("answered the probe with 'HTTP/1.1 400 Bad Request'") == true, "\(error?.message ?? "no error")")
    }

    @Test func repliesOutOfStepCountProtocolErrorsAndEndTheRun() throws {
        // Answers the probe, then STORED to everything: a get's reply is out of step.
        let confused = try FakeServer { line in line == "version" ? "VERSION fake\r\n" : "STORED\r\n" }
        var configuration = BenchConfiguration()
        configuration.servers = [ServerAddress(host: "127.0.0.1", port: confused.port)]
        configuration.connectionsPerThread = 2
        configuration.ratio = try OperationRatio(sets: 0, gets: 1)
        configuration.bound = .duration(seconds: 5)
        let report = try LoadGenerator(configuration: configuration).run()
        #expect(report.errors.protocolErrors == 2)
        #expect(report.errors.unfinishedRequests == 2)
        #expect(report.ops == 0)
        #expect(report.servers.first?.version == "fake")
    }

    @Test func aTimeoutDuringTheDrainEndsTheRunWhileOtherConnectionsIdle() throws {
        // Answers 19 gets, never the 20th: the drain waits on one connection while the
        // other has nothing out; the timeout must end the run, not leave it hanging.
        let answered = Counter()
        let stalling = try FakeServer { line in
            if line == "version" { return "VERSION fake\r\n" }
            return answered.increment() <= 19 ? "END\r\n" : ""
        }
        var configuration = BenchConfiguration()
        configuration.servers = [ServerAddress(host: "127.0.0.1", port: stalling.port)]
        configuration.connectionsPerThread = 2
        configuration.ratio = try OperationRatio(sets: 0, gets: 1)
        configuration.bound = .requests(20)
        configuration.timeout = 0.3
        let report = try LoadGenerator(configuration: configuration).run()
        #expect(report.ops == 19)
        #expect(report.errors.timeouts == 1 && report.errors.unfinishedRequests == 1)
        #expect(report.errors.connectionErrors == 0)
    }

    @Test func serverErrorRepliesAreCountedAndTheRunGoesOn() throws {
        let full = try FakeServer { line in
            if line == "version" { return "VERSION fake\r\n" }
            return line.hasPrefix("set") ? "SERVER_ERROR out of memory storing object\r\n" : ""
        }
        var configuration = BenchConfiguration()
        configuration.servers = [ServerAddress(host: "127.0.0.1", port: full.port)]
        configuration.connectionsPerThread = 1
        configuration.ratio = try OperationRatio(sets: 1, gets: 0)
        configuration.bound = .requests(50)
        let report = try LoadGenerator(configuration: configuration).run()
        #expect(report.errors.serverErrors == 50)
        #expect(report.errors.firstServerError == "SERVER_ERROR out of memory storing object")
        #expect(report.ops == 0)
    }
}
