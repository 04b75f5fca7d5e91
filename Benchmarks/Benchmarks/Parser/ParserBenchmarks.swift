// RequestParser.parse(_:into:) over a buffer of pipelined requests, the way a
// node's connection parses its input: one call per request, consuming as it goes.
// Time is per request (scalingFactor .kilo: one sample = 1000 requests). Parsing must
// not allocate: Thresholds/ParserBenchmarks.*.p90.json hold mallocCountTotal = 0.

import Benchmark
import BenchmarkSupport
import MemcacheProtocol

/// One stream per request kind, 1000 requests each, 32-byte keys, 100-byte values.
enum ParserInputs {
    static let requestsPerStream = 1000
    static let keys = KeySet(count: 10_000, length: 32)
    static let value = String(decoding: makeValue(length: 100), as: UTF8.self)

    static func get(_ i: Int) -> String { "get \(keys.string(i))\r\n" }
    static func get10(_ i: Int) -> String {
        "get " + (0..<10).map { keys.string((i * 10 + $0) % keys.count) }.joined(separator: " ") + "\r\n"
    }
    static func set(_ i: Int) -> String { "set \(keys.string(i)) 0 0 100\r\n\(value)\r\n" }
    static func mg(_ i: Int) -> String { "mg \(keys.string(i)) v f t\r\n" }
    static func ms(_ i: Int) -> String { "ms \(keys.string(i)) 100 T60\r\n\(value)\r\n" }

    static let kinds: [(name: String, command: Command, make: @Sendable (Int) -> String)] = [
        ("get-key32", .get, get),
        ("get-10keys", .get, get10),
        ("set-value100", .set, set),
        ("mg-v-f-t", .metaGet, mg),
        ("ms-value100-T60", .metaSet, ms),
    ]

    /// The stream of `make(0..<1000)`, checked to parse into exactly those requests.
    static func stream(_ make: (Int) -> String, expect: (Int) -> Command) -> ByteStream {
        let text = (0..<requestsPerStream).map(make).joined()
        let stream = ByteStream(Array(text.utf8), units: requestsPerStream)
        check(stream, expect: expect)
        return stream
    }

    static func check(_ stream: ByteStream, expect: (Int) -> Command) {
        let parser = RequestParser()
        var request = Request(command: .get)
        var offset = 0
        for index in 0..<stream.units {
            let status = parser.parse(UnsafeRawBufferPointer(rebasing: stream.bytes[offset...]), into: &request)
            guard status == .request, request.command == expect(index) else {
                benchmarkInputFailure("request \(index) parsed as \(status) \(request.command)")
            }
            if request.command == .get, request.key.count != 32 { benchmarkInputFailure("key length \(request.key.count)") }
            if request.command.carriesData, request.data.count != 100 { benchmarkInputFailure("value length") }
            offset += request.length
        }
        guard offset == stream.bytes.count else { benchmarkInputFailure("stream has \(stream.bytes.count - offset) bytes left") }
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .zeroAllocation

    var streams: [(String, ByteStream)] = ParserInputs.kinds.map { kind in
        (kind.name, ParserInputs.stream(kind.make, expect: { _ in kind.command }))
    }
    // The five kinds in turn: get, 10-key get, set, mg, ms, get, ...
    let kinds = ParserInputs.kinds
    streams.append(("mixed", ParserInputs.stream({ kinds[$0 % kinds.count].make($0) },
                                                 expect: { kinds[$0 % kinds.count].command })))

    for (name, stream) in streams {
        Benchmark(name) { benchmark in
            let parser = RequestParser()
            var request = Request(command: .get)
            let bytes = stream.bytes
            var offset = 0
            for _ in benchmark.scaledIterations {
                let status = parser.parse(UnsafeRawBufferPointer(rebasing: bytes[offset...]), into: &request)
                guard case .request = status else { benchmarkInputFailure("parse failed at \(offset)") }
                blackHole(request.key)
                offset &+= request.length
                if offset == bytes.count { offset = 0 }
            }
            blackHole(offset)
        }
    }
}
