import Buffers
@testable import CacheNode
import Testing

@Suite struct Base64Tests {
    @Test(arguments: [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy")])
    func roundTrips(plain: String, encoded: String) {
        var output = ByteBuffer(capacity: 16)
        Array(plain.utf8).withUnsafeBytes { Base64.encode($0, into: &output) }
        #expect(String(decoding: output.readableBytes, as: UTF8.self) == encoded)
        guard !encoded.isEmpty else { return }
        let destination = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 1)
        defer { destination.deallocate() }
        let length = Array(encoded.utf8).withUnsafeBytes { Base64.decode($0, into: destination) }
        #expect(length.map { Array(destination[0..<$0]) } == Array(plain.utf8))
    }

    @Test(arguments: ["Zg=", "Z===", "Zm9v!A==", "=Zm9", "Zg==Zg=="])
    func refusesMalformedText(text: String) {
        let destination = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 1)
        defer { destination.deallocate() }
        #expect(Array(text.utf8).withUnsafeBytes { Base64.decode($0, into: destination) } == nil)
    }
}
