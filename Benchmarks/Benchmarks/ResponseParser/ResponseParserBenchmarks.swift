// ResponseParser.parse over a stream of replies, as the proxy and the load generator
// frame what a server sends: one call per reply unit (a VALUE or VA line with its
// data block, or a status line such as END). Time is per unit (scalingFactor .kilo).
// Framing must not allocate: Thresholds/ResponseParserBenchmarks.*.p90.json hold
// mallocCountTotal = 0.

import Benchmark
import BenchmarkSupport
import MemcacheProtocol

enum ResponseInputs {
    static let keys = KeySet(count: 10_000, length: 32)
    static let value = String(decoding: makeValue(length: 100), as: UTF8.self)

    /// A get hit: `VALUE <key> 0 100` + data, then `END` (2 units).
    static func getHit(_ i: Int) -> (String, Int) {
        ("VALUE \(keys.string(i)) 0 100\r\n\(value)\r\nEND\r\n", 2)
    }

    /// A 10-key multi-get, all hits: 10 VALUE units and END (11 units).
    static func multiGet(_ i: Int) -> (String, Int) {
        let values = (0..<10).map { "VALUE \(keys.string((i * 10 + $0) % keys.count)) 0 100\r\n\(value)\r\n" }
        return (values.joined() + "END\r\n", 11)
    }

    /// A meta get hit for `mg <key> v f t`: `VA 100 f0 t-1` + data (1 unit).
    static func metaHit(_ i: Int) -> (String, Int) {
        ("VA 100 f0 t-1\r\n\(value)\r\n", 1)
    }

    static let kinds: [(name: String, make: @Sendable (Int) -> (String, Int))] = [
        ("VALUE-END", getHit),
        ("10xVALUE-END", multiGet),
        ("VA-f-t", metaHit),
    ]

    /// Replies until the stream holds at least 1000 units; checked to frame exactly.
    static func stream(_ make: (Int) -> (String, Int)) -> ByteStream {
        var text = ""
        var units = 0
        var index = 0
        while units < 1000 {
            let (reply, count) = make(index)
            text += reply
            units += count
            index += 1
        }
        let stream = ByteStream(Array(text.utf8), units: units)
        check(stream)
        return stream
    }

    static func check(_ stream: ByteStream) {
        let parser = ResponseParser()
        var offset = 0
        for index in 0..<stream.units {
            guard case .response(let response) = parser.parse(UnsafeRawBufferPointer(rebasing: stream.bytes[offset...])) else {
                benchmarkInputFailure("reply unit \(index) did not frame")
            }
            switch response.kind {
            case .value, .metaValue: if response.data.count != 100 { benchmarkInputFailure("value length") }
            case .end: break
            default: benchmarkInputFailure("unexpected \(response.kind)")
            }
            offset += response.length
        }
        guard offset == stream.bytes.count else { benchmarkInputFailure("\(stream.bytes.count - offset) bytes left") }
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .zeroAllocation

    var streams = ResponseInputs.kinds.map { ($0.name, ResponseInputs.stream($0.make)) }
    let kinds = ResponseInputs.kinds
    streams.append(("mixed", ResponseInputs.stream { kinds[$0 % kinds.count].make($0) }))

    for (name, stream) in streams {
        Benchmark(name) { benchmark in
            let parser = ResponseParser()
            let bytes = stream.bytes
            var offset = 0
            for _ in benchmark.scaledIterations {
                guard case .response(let response) = parser.parse(UnsafeRawBufferPointer(rebasing: bytes[offset...])) else {
                    benchmarkInputFailure("framing failed at \(offset)")
                }
                blackHole(response.data)
                offset &+= response.length
                if offset == bytes.count { offset = 0 }
            }
            blackHole(offset)
        }
    }
}
