// RequestEncoder appending requests to one reused ByteBuffer, as the load generator
// and the proxy fill a connection's output buffer: the buffer is emptied (as after a
// write) whenever less than 1 KiB is left, and never grows. Time is per request
// (scalingFactor .kilo). Encoding must not allocate: Thresholds/EncoderBenchmarks.*.p90.json
// hold mallocCountTotal = 0.
//
// Reply encoding is not measured here: the node writes its replies in CacheNode's
// RequestProcessor, an internal class of a module with no library product, so it is
// unreachable from this package without changing Sources/.

import Benchmark
import BenchmarkSupport
import Buffers
import MemcacheProtocol

/// The reused output buffer, alive for the whole run (a local would be allocated once
/// per sample and counted).
final class Output {
    static let capacity = 64 << 10
    var buffer = ByteBuffer(capacity: Output.capacity)

    /// What a connection does after its write: start over at the front.
    @inline(__always)
    func makeRoom() {
        if buffer.writableCount < 1024 { buffer.removeAll() }
    }
}

enum EncoderInputs {
    static let keys = KeySet(count: 10_000, length: 32)
    static let value = ByteStream(makeValue(length: 100), units: 1)

    typealias Encode = @Sendable (_ index: Int, _ buffer: inout ByteBuffer) -> Void

    static let kinds: [(name: String, command: Command, encode: Encode)] = [
        ("get-key32", .get, { index, buffer in
            RequestEncoder.appendGet(keys.key(index), to: &buffer)
        }),
        ("get-10keys", .get, { index, buffer in
            RequestEncoder.appendRetrievalStart(.get, to: &buffer)
            var key = index
            for _ in 0..<10 {
                RequestEncoder.appendKey(keys.key(key), to: &buffer)
                key = key &+ 1 == keys.count ? 0 : key &+ 1
            }
            RequestEncoder.appendLineEnd(to: &buffer)
        }),
        ("set-value100", .set, { index, buffer in
            RequestEncoder.appendStorage(.set, key: keys.key(index), value: value.bytes, to: &buffer)
        }),
        ("mg-v-f-t", .metaGet, { index, buffer in
            RequestEncoder.appendMeta(.metaGet, key: keys.key(index), flags: "v f t", to: &buffer)
        }),
        ("ms-value100-T60", .metaSet, { index, buffer in
            RequestEncoder.appendMetaSet(keys.key(index), value: value.bytes, flags: "T60", to: &buffer)
        }),
    ]

    /// Encodes 100 requests and parses them back: the benchmark must measure well-formed output.
    static func check(_ name: String, _ command: Command, _ encode: Encode) {
        var buffer = ByteBuffer(capacity: 1024)
        for index in 0..<100 { encode(index, &buffer) }
        let parser = RequestParser()
        var request = Request(command: .get)
        for index in 0..<100 {
            let status = parser.parse(buffer.readableBytes, into: &request)
            guard status == .request, request.command == command else {
                benchmarkInputFailure("\(name): request \(index) parsed as \(status)")
            }
            buffer.consume(request.length)
        }
        guard buffer.isEmpty else { benchmarkInputFailure("\(name): bytes left over") }
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .zeroAllocation

    let keyCount = EncoderInputs.keys.count
    for kind in EncoderInputs.kinds {
        EncoderInputs.check(kind.name, kind.command, kind.encode)
        let output = Output()
        let encode = kind.encode
        Benchmark(kind.name) { benchmark in
            var index = 0
            for _ in benchmark.scaledIterations {
                output.makeRoom()
                encode(index, &output.buffer)
                index = index &+ 1 == keyCount ? 0 : index &+ 1
            }
            blackHole(output.buffer.readableCount)
            if output.buffer.allocatedCapacity != Output.capacity { benchmarkInputFailure("the output buffer grew") }
        }
    }
}
