import Buffers
import Testing

@Suite struct ByteBufferTests {
    @Test func appendsAndConsumesInOrder() {
        var buffer = ByteBuffer(capacity: 4)
        buffer.append("hello ")
        buffer.appendDecimal(UInt64(1234567890))
        buffer.append(byte: UInt8(ascii: "!"))
        #expect(Array(buffer.readableBytes) == Array("hello 1234567890!".utf8))
        buffer.consume(6)
        #expect(Array(buffer.readableBytes) == Array("1234567890!".utf8))
        buffer.consume(buffer.readableCount)
        let empty = buffer.isEmpty
        #expect(empty)
    }

    @Test(arguments: [(UInt64(0), "0"), (9, "9"), (10, "10"), (UInt64.max, "18446744073709551615")])
    func formatsUnsignedDecimals(value: UInt64, text: String) {
        var buffer = ByteBuffer(capacity: 8)
        buffer.appendDecimal(value)
        #expect(String(decoding: buffer.readableBytes, as: UTF8.self) == text)
    }

    @Test(arguments: [(Int64(-1), "-1"), (Int64.min, "-9223372036854775808"), (42, "42")])
    func formatsSignedDecimals(value: Int64, text: String) {
        var buffer = ByteBuffer(capacity: 8)
        buffer.appendDecimal(value)
        #expect(String(decoding: buffer.readableBytes, as: UTF8.self) == text)
    }

    @Test func compactsBeforeGrowing() {
        var buffer = ByteBuffer(capacity: 16)
        buffer.append("0123456789abcdef")
        buffer.consume(12)
        buffer.reserveWritable(10)
        let capacity = buffer.allocatedCapacity
        #expect(capacity == 16)
        #expect(Array(buffer.readableBytes) == Array("cdef".utf8))
        buffer.reserveWritable(100)
        let grown = buffer.allocatedCapacity
        #expect(grown >= 104)
        #expect(Array(buffer.readableBytes) == Array("cdef".utf8))
    }

    @Test func shrinksOnlyWhenEmpty() {
        var buffer = ByteBuffer(capacity: 16)
        buffer.reserveWritable(1000)
        buffer.append("x")
        buffer.shrink(to: 16)
        let kept = buffer.allocatedCapacity
        #expect(kept >= 1000)
        buffer.consume(1)
        buffer.shrink(to: 16)
        let capacity = buffer.allocatedCapacity
        #expect(capacity == 16)
    }
}

@Suite struct RingQueueTests {
    @Test func keepsOrderAcrossWrapAndGrowth() {
        var queue = RingQueue<Int>(capacity: 2)
        var expected: [Int] = []
        var next = 0
        for round in 0..<50 {
            for _ in 0..<(round % 5 + 1) {
                queue.append(next)
                expected.append(next)
                next += 1
            }
            for _ in 0..<(round % 3) where !expected.isEmpty {
                #expect(queue.removeFirst() == expected.removeFirst())
            }
            #expect(queue.count == expected.count)
            #expect(queue.first == expected.first)
        }
        for (offset, value) in expected.enumerated() { #expect(queue[offset] == value) }
        queue.removeAll()
        #expect(queue.isEmpty)
    }
}
