@testable import CacheNode
import Testing

@Suite struct NodeFlagsTests {
    private func settings(_ arguments: [String]) -> NodeSettings? {
        if case .run(let settings, _) = NodeFlags.parse(["memcluster-node"] + arguments) { return settings }
        return nil
    }

    private func failure(_ arguments: [String]) -> String? {
        if case .fail(let message) = NodeFlags.parse(["memcluster-node"] + arguments) { return message }
        return nil
    }

    @Test func defaultsMatchMemcachedExceptTheListenAddress() throws {
        let defaults = try #require(settings([]))
        #expect(defaults.port == 11211)
        #expect(defaults.memoryLimit == 64 << 20)
        #expect(defaults.maxConnections == 1024)
        #expect(defaults.threads == 4)
        #expect(defaults.itemSizeMax == 1 << 20)
        #expect(defaults.listenAddresses == ["127.0.0.1"])
        #expect(defaults.casEnabled && defaults.flushEnabled && !defaults.shutdownEnabled)
    }

    @Test func readsGetoptStyles() throws {
        let parsed = try #require(settings(["-p", "22122", "-m64", "-vv", "--threads=2", "-c", "50", "-l", "0.0.0.0,::1",
                                            "-I", "2m", "-ACMF", "-U", "0", "-o", "idle_timeout=5,hashpower=20"]))
        #expect(parsed.port == 22122)
        #expect(parsed.memoryLimit == 64 << 20)
        #expect(parsed.verbosity == 2)
        #expect(parsed.threads == 2)
        #expect(parsed.maxConnections == 50)
        #expect(parsed.listenAddresses == ["0.0.0.0", "::1"])
        #expect(parsed.itemSizeMax == 2 << 20)
        #expect(parsed.shutdownEnabled && !parsed.casEnabled && parsed.evictionsDisabled && !parsed.flushEnabled)
        #expect(parsed.idleTimeoutSeconds == 5)
        #expect(parsed.ignoredExtendedOptions == ["hashpower=20"])
    }

    @Test func crawlerAndDumpingSwitches() throws {
        let defaults = try #require(settings([]))
        #expect(defaults.crawlerEnabled && defaults.dumpingEnabled)
        let off = try #require(settings(["-X", "-o", "no_lru_crawler"]))
        #expect(!off.crawlerEnabled && !off.dumpingEnabled)
        #expect(try #require(settings(["-o", "no_lru_crawler,lru_crawler"])).crawlerEnabled)
    }

    @Test func unknownExtendedOptionsOnlyWarn() {
        guard case .run(_, let warnings) = NodeFlags.parse(["memcluster-node", "-o", "no_such_thing=1"]) else {
            Issue.record("an unknown -o key must not stop the node")
            return
        }
        #expect(warnings == ["Ignoring unknown extended option \"no_such_thing\""])
    }

    @Test func refusesWhatItDoesNotServe() {
        #expect(failure(["-U", "11211"])?.contains("UDP") == true)
        #expect(failure(["-B", "binary"])?.contains("binary") == true)
        #expect(failure(["-s", "/tmp/sock"])?.contains("UNIX") == true)
        #expect(failure(["-S"]) != nil)
    }

    @Test func checksItemSizeLimitsAsMemcachedDoes() {
        #expect(failure(["-I", "512"]) == "Item max size cannot be less than 1024 bytes.")
        #expect(failure(["-m", "1", "-I", "1m"]) == "Cannot set item size limit higher than 1/2 of memory max.")
        #expect(failure(["-m", "4096", "-I", "2g"]) == "Cannot set item size limit higher than a gigabyte.")
    }

    @Test func prefixDelimiterTakesTheFirstByteAndTurnsDetailOn() throws {
        let defaults = try #require(settings([]))
        #expect(defaults.prefixDelimiter == UInt8(ascii: ":") && !defaults.detailEnabled)
        let slash = try #require(settings(["-D", "/"]))
        #expect(slash.prefixDelimiter == UInt8(ascii: "/") && slash.detailEnabled)
        let first = try #require(settings(["-Dxyz"]))
        #expect(first.prefixDelimiter == UInt8(ascii: "x") && first.detailEnabled)
        #expect(failure(["-D", ""]) == "No delimiter specified")
    }

    @Test func reportsBadArguments() {
        #expect(failure(["-p"])?.hasPrefix("Option -p requires an argument") == true)
        #expect(failure(["-p", "http"]) == "Invalid port: http")
        #expect(failure(["-q"])?.hasPrefix("Illegal argument \"-q\"") == true)
        #expect(failure(["stray"]) == "Unexpected argument \"stray\"")
        if case .printAndExit(let text) = NodeFlags.parse(["memcluster-node", "-V"]) {
            #expect(text == "memcached \(NodeFlags.version)")
        } else {
            Issue.record("-V prints the version")
        }
    }
}
