import ArgumentParser
import MemcacheProtocol
import Testing
@testable import LoadGenerator

/// The configuration the flags produce, or the message shown for them.
private func configuration(_ arguments: [String]) throws -> BenchConfiguration {
    try BenchCommand.parse(arguments).makeConfiguration()
}

private func message(_ arguments: [String]) -> String {
    do {
        _ = try BenchCommand.parse(arguments)
        return "accepted"
    } catch {
        return BenchCommand.message(for: error)
    }
}

@Suite struct OptionTests {
    @Test func defaultsMatchTheReferenceMeasurements() throws {
        let c = try configuration([])
        #expect(c.servers == [ServerAddress(host: "127.0.0.1", port: 11211)])
        #expect(c.threads == 1 && c.connectionsPerThread == 50 && c.pipeline == 1)
        #expect(c.rate == nil)
        #expect(c.bound == .duration(seconds: 10))
        #expect(c.warmup == 0)
        #expect(c.keyCount == 100_000 && c.keySize == 32 && c.keyPattern == .uniform && c.zipfExponent == 0.99)
        #expect(c.valueSizes == (try ValueSizeRange(minimum: 100, maximum: 100)))
        #expect(c.ratio == (try OperationRatio(sets: 1, gets: 9)))
        #expect(c.multiget == 1 && c.wireProtocol == .text && !c.fill && !c.verify)
    }

    @Test func everyOptionIsParsed() throws {
        let c = try configuration([
            "--server", "127.0.0.1:1", "--server", "[::1]:2", "--server", "localhost",
            "-t", "2", "-c", "3", "--pipeline", "4", "--rate", "1000", "--requests", "500", "--warmup", "0.5",
            "--keys", "1000", "--key-prefix", "bench-", "--key-size", "20", "--key-pattern", "zipf", "--zipf-exponent", "1.1",
            "--value-size", "10-20", "--ratio", "0:1", "--multiget", "5", "--protocol", "meta", "--fill", "--verify",
            "--timeout", "2", "--seed", "42", "--no-progress", "--json", "-",
        ])
        #expect(c.servers.map(\.description) == ["127.0.0.1:1", "[::1]:2", "localhost:11211"])
        #expect(c.threads == 2 && c.connectionsPerThread == 3 && c.pipeline == 4 && c.rate == 1000)
        #expect(c.bound == .requests(500) && c.warmup == 0.5)
        #expect(c.keyCount == 1000 && c.keyPrefix == "bench-" && c.keySize == 20)
        #expect(c.keyPattern == .zipf && c.zipfExponent == 1.1)
        #expect(c.valueSizes == (try ValueSizeRange(minimum: 10, maximum: 20)))
        #expect(c.ratio == (try OperationRatio(sets: 0, gets: 1)))
        #expect(c.multiget == 5 && c.wireProtocol == .meta && c.fill && c.verify && c.timeout == 2 && c.seed == 42)
    }

    @Test(arguments: [
        (["--duration", "5", "--requests", "10"], "--duration and --requests both bound the run; give one of them"),
        (["--zipf-exponent", "1.2"], "--zipf-exponent applies only to --key-pattern zipf"),
        (["--ratio", "0:0"], "--ratio 0:0 sends nothing; give at least one set or get"),
        (["--ratio", "1-9"], "--ratio '1-9' is not SETS:GETS (e.g. 1:9)"),
        (["--value-size", "20-10"], "--value-size 20-10: the minimum is larger than the maximum"),
        (["--value-size", "big"], "--value-size 'big' is not N or MIN-MAX (bytes)"),
        (["--key-size", "8"], "--key-size 8 is too small: the prefix (4 bytes) and 5 digits for 100000 keys need 9"),
        (["--ratio", "1:0", "--multiget", "4"], "--multiget 4 has no effect with --ratio 1:0 (no gets)"),
        (["--ratio", "1:0", "--verify"], "--verify checks get replies, but --ratio 1:0 sends no gets"),
        (["--threads", "0"], "--threads must be 1-256"),
        (["--pipeline", "0"], "--pipeline must be 1-4096"),
        (["--rate", "0"], "--rate must be a positive number of requests per second"),
        (["--duration", "0"], "--duration must be more than 0 and at most 86400 seconds"),
        (["--requests", "0"], "--requests must be at least 1"),
        (["-c", "1", "--server", "127.0.0.1:1", "--server", "127.0.0.1:2"],
         "--threads x --connections = 1 is fewer than the 2 servers; each server needs a connection"),
        (["--server", "127.0.0.1:99999"], "--server '127.0.0.1:99999': port must be 1-65535"),
        (["--server", "::1"], "--server '::1': write IPv6 addresses as [address]:port"),
        (["--key-pattern", "zipf", "--zipf-exponent", "0"], "--zipf-exponent must be more than 0 and at most 10"),
    ])
    func badCombinationsAreRejectedWithAClearMessage(_ arguments: [String], _ expected: String) {
        #expect(message(arguments) == expected)
    }

    @Test func unknownEnumValuesNameTheChoices() {
        #expect(message(["--key-pattern", "gaussian"]).contains("uniform"))
        #expect(message(["--protocol", "binary"]).contains("meta"))
    }

    @Test func versionIsTheRelease() {
        do {
            _ = try BenchCommand.parseAsRoot(["--version"])
            Issue.record("--version did not exit")
        } catch {
            #expect(BenchCommand.exitCode(for: error) == .success)
            #expect(BenchCommand.fullMessage(for: error) == "memcluster-bench \(MemclusterVersion.release)")
        }
    }

    @Test func helpFitsEightyColumns() {
        for line in BenchCommand.helpMessage(columns: 80).split(separator: "\n") {
            #expect(line.count <= 80, "over 80 columns: \(line)")
        }
    }

    @Test func helpDocumentsEveryOptionWithItsDefault() {
        let help = BenchCommand.helpMessage(columns: 200)
        let options = ["--server", "--threads", "--connections", "--pipeline", "--rate", "--duration", "--requests",
                       "--warmup", "--keys", "--key-prefix", "--key-size", "--key-pattern", "--zipf-exponent",
                       "--value-size", "--ratio", "--multiget", "--protocol", "--fill", "--verify", "--timeout",
                       "--seed", "--no-progress", "--json"]
        for option in options { #expect(help.contains(option), "\(option) missing from --help") }
        // One block per option: its line and the wrapped help lines below it.
        var blocks: [String] = []
        for line in help.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.drop(while: { $0 == " " })
            if trimmed.hasPrefix("-") { blocks.append(String(trimmed)) } else if !blocks.isEmpty { blocks[blocks.count - 1] += " " + trimmed }
        }
        // Every option that takes a value states its default (flags default to off).
        for block in blocks where block.contains("<") && !block.hasPrefix("-h") {
            #expect(block.contains("default"), "no default in: \(block)")
        }
    }
}

