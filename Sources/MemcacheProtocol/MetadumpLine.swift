import Buffers

/// One line of `lru_crawler metadump`, as memcached 1.6.18 prints it
/// (crawler.c, `crawler_metadump_eval`):
///
///     key=<key, URI-encoded> exp=<unix time, -1: never> la=<unix time> cas=<n> fetch=<yes|no> cls=<n> size=<n>\n
///
/// Each line ends with `\n` alone; the dump ends with `END\r\n`.
public enum MetadumpLine {
    public static func append(key: UnsafeRawBufferPointer, expires: Int64?, lastAccess: Int64, cas: UInt64,
                              fetched: Bool, slabClass: Int, size: Int, to output: inout ByteBuffer) {
        output.append("key=")
        appendURIEncoded(key, to: &output)
        output.append(" exp=")
        output.appendDecimal(expires ?? -1)
        output.append(" la=")
        output.appendDecimal(lastAccess)
        output.append(" cas=")
        output.appendDecimal(cas)
        output.append(fetched ? " fetch=yes cls=" : " fetch=no cls=")
        output.appendDecimal(UInt64(slabClass))
        output.append(" size=")
        output.appendDecimal(UInt64(size))
        output.append(byte: UInt8(ascii: "\n"))
    }

    public static let end: StaticString = "END\r\n"

    /// memcached's `uriencode`: letters, digits and `-._~` as they are, every
    /// other byte (space, `%`, control and non-ASCII bytes included) as `%XX`
    /// in upper-case hex. So a key with any bytes stays one token.
    public static func appendURIEncoded(_ key: UnsafeRawBufferPointer, to output: inout ByteBuffer) {
        let hex: StaticString = "0123456789ABCDEF"
        for byte in key {
            if isUnreserved(byte) {
                output.append(byte: byte)
            } else {
                output.append(byte: UInt8(ascii: "%"))
                output.append(byte: hex.utf8Start[Int(byte >> 4)])
                output.append(byte: hex.utf8Start[Int(byte & 0x0F)])
            }
        }
    }

    /// C's `isalnum` in the C locale, or one of `-._~` (RFC 3986 unreserved).
    @inline(__always)
    static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }
}
