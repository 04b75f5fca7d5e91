import Buffers

/// Standard base64 (RFC 4648, with padding) for meta-protocol binary keys.
enum Base64 {
    private static let alphabet: StaticString = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    /// Appends the encoding of `bytes` to `output`.
    static func encode(_ bytes: UnsafeRawBufferPointer, into output: inout ByteBuffer) {
        let table = alphabet.utf8Start
        var index = 0
        while index + 3 <= bytes.count {
            let value = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
            output.append(byte: table[Int(value >> 18 & 63)])
            output.append(byte: table[Int(value >> 12 & 63)])
            output.append(byte: table[Int(value >> 6 & 63)])
            output.append(byte: table[Int(value & 63)])
            index += 3
        }
        let remaining = bytes.count - index
        if remaining == 1 {
            let value = UInt32(bytes[index]) << 16
            output.append(byte: table[Int(value >> 18 & 63)])
            output.append(byte: table[Int(value >> 12 & 63)])
            output.append("==")
        } else if remaining == 2 {
            let value = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8
            output.append(byte: table[Int(value >> 18 & 63)])
            output.append(byte: table[Int(value >> 12 & 63)])
            output.append(byte: table[Int(value >> 6 & 63)])
            output.append(byte: UInt8(ascii: "="))
        }
    }

    private static func sextet(_ byte: UInt8) -> UInt32? {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): return UInt32(byte - UInt8(ascii: "A"))
        case UInt8(ascii: "a")...UInt8(ascii: "z"): return UInt32(byte - UInt8(ascii: "a") + 26)
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return UInt32(byte - UInt8(ascii: "0") + 52)
        case UInt8(ascii: "+"): return 62
        case UInt8(ascii: "/"): return 63
        default: return nil
        }
    }

    /// Decodes `text` into `destination`; nil when it is not valid base64, is
    /// empty, or does not fit.
    static func decode(_ text: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) -> Int? {
        guard text.count > 0, text.count % 4 == 0 else { return nil }
        var written = 0
        var index = 0
        while index < text.count {
            var value: UInt32 = 0
            var padding = 0
            for offset in 0..<4 {
                let byte = text[index + offset]
                if byte == UInt8(ascii: "=") && index + 4 == text.count && offset >= 2 {
                    padding += 1
                    value <<= 6
                    continue
                }
                guard padding == 0, let bits = sextet(byte) else { return nil }
                value = value << 6 | bits
            }
            let produced = 3 - padding
            guard written + produced <= destination.count else { return nil }
            destination[written] = UInt8(truncatingIfNeeded: value >> 16)
            if produced > 1 { destination[written + 1] = UInt8(truncatingIfNeeded: value >> 8) }
            if produced > 2 { destination[written + 2] = UInt8(truncatingIfNeeded: value) }
            written += produced
            index += 4
        }
        return written
    }
}
