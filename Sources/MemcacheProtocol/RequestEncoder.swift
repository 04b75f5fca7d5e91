import Buffers

/// Appends well-formed memcached requests to a `ByteBuffer`, without allocating
/// beyond the buffer's own growth (for the load generator, the proxy's health
/// checks and tests).
///
/// Keys are taken as given: the caller provides keys memcached accepts (1...250
/// bytes, no space, no `\r` or `\n`); debug builds assert it. Meta flags are the raw
/// flag text, e.g. `"v f t"` or `"T30 q"`.
public enum RequestEncoder {
    // MARK: Retrieval

    /// `get <key>\r\n` (or `gets` when `withCas`).
    public static func appendGet(_ key: UnsafeRawBufferPointer, withCas: Bool = false, to buffer: inout ByteBuffer) {
        buffer.append(withCas ? "gets " : "get ")
        appendKeyBytes(key, to: &buffer)
        buffer.append("\r\n")
    }

    /// Starts a multi-key retrieval line: `get`, `gets`, or `gat`/`gats <exptime>`.
    /// Follow with `appendKey` for each key and `appendLineEnd`.
    public static func appendRetrievalStart(_ command: Command, exptime: Int64 = 0, to buffer: inout ByteBuffer) {
        switch command {
        case .get: buffer.append("get")
        case .gets: buffer.append("gets")
        case .gat: buffer.append("gat "); buffer.appendDecimal(exptime)
        case .gats: buffer.append("gats "); buffer.appendDecimal(exptime)
        default: preconditionFailure("\(command) is not a retrieval command")
        }
    }

    /// ` <key>` on a line begun with `appendRetrievalStart`.
    public static func appendKey(_ key: UnsafeRawBufferPointer, to buffer: inout ByteBuffer) {
        buffer.append(byte: 0x20)
        appendKeyBytes(key, to: &buffer)
    }

    /// `\r\n`
    public static func appendLineEnd(to buffer: inout ByteBuffer) {
        buffer.append("\r\n")
    }

    // MARK: Storage

    /// `<set|add|replace|append|prepend> <key> <flags> <exptime> <bytes> [noreply]\r\n<value>\r\n`,
    /// or `cas ... <casUnique> [noreply]` for `.cas`.
    public static func appendStorage(_ command: Command, key: UnsafeRawBufferPointer, flags: UInt32 = 0,
                                     exptime: Int64 = 0, value: UnsafeRawBufferPointer, casUnique: UInt64 = 0,
                                     noreply: Bool = false, to buffer: inout ByteBuffer) {
        switch command {
        case .set: buffer.append("set ")
        case .add: buffer.append("add ")
        case .replace: buffer.append("replace ")
        case .append: buffer.append("append ")
        case .prepend: buffer.append("prepend ")
        case .cas: buffer.append("cas ")
        default: preconditionFailure("\(command) is not a classic storage command")
        }
        appendKeyBytes(key, to: &buffer)
        buffer.append(byte: 0x20)
        buffer.appendDecimal(UInt64(flags))
        buffer.append(byte: 0x20)
        buffer.appendDecimal(exptime)
        buffer.append(byte: 0x20)
        buffer.appendDecimal(UInt64(value.count))
        if command == .cas {
            buffer.append(byte: 0x20)
            buffer.appendDecimal(casUnique)
        }
        if noreply { buffer.append(" noreply") }
        buffer.append("\r\n")
        buffer.append(value)
        buffer.append("\r\n")
    }

    // MARK: Other classic commands

    /// `delete <key> [noreply]\r\n`
    public static func appendDelete(_ key: UnsafeRawBufferPointer, noreply: Bool = false, to buffer: inout ByteBuffer) {
        buffer.append("delete ")
        appendKeyBytes(key, to: &buffer)
        if noreply { buffer.append(" noreply") }
        buffer.append("\r\n")
    }

    /// `incr|decr <key> <delta> [noreply]\r\n`
    public static func appendArithmetic(_ command: Command, key: UnsafeRawBufferPointer, delta: UInt64,
                                        noreply: Bool = false, to buffer: inout ByteBuffer) {
        switch command {
        case .incr: buffer.append("incr ")
        case .decr: buffer.append("decr ")
        default: preconditionFailure("\(command) is not incr/decr")
        }
        appendKeyBytes(key, to: &buffer)
        buffer.append(byte: 0x20)
        buffer.appendDecimal(delta)
        if noreply { buffer.append(" noreply") }
        buffer.append("\r\n")
    }

    /// `touch <key> <exptime> [noreply]\r\n`
    public static func appendTouch(_ key: UnsafeRawBufferPointer, exptime: Int64, noreply: Bool = false,
                                   to buffer: inout ByteBuffer) {
        buffer.append("touch ")
        appendKeyBytes(key, to: &buffer)
        buffer.append(byte: 0x20)
        buffer.appendDecimal(exptime)
        if noreply { buffer.append(" noreply") }
        buffer.append("\r\n")
    }

    // MARK: Meta

    /// `mg|md|ma|me <key> [<flags>]\r\n`
    public static func appendMeta(_ command: Command, key: UnsafeRawBufferPointer, flags: StaticString = "",
                                  to buffer: inout ByteBuffer) {
        appendMeta(command, key: key,
                   flags: UnsafeRawBufferPointer(start: flags.utf8Start, count: flags.utf8CodeUnitCount), to: &buffer)
    }

    /// `mg|md|ma|me <key> [<flags>]\r\n` with flag text from memory.
    public static func appendMeta(_ command: Command, key: UnsafeRawBufferPointer, flags: UnsafeRawBufferPointer,
                                  to buffer: inout ByteBuffer) {
        switch command {
        case .metaGet: buffer.append("mg ")
        case .metaDelete: buffer.append("md ")
        case .metaArithmetic: buffer.append("ma ")
        case .metaDebug: buffer.append("me ")
        default: preconditionFailure("\(command) is not mg/md/ma/me (use appendMetaSet, appendMetaNoop)")
        }
        appendKeyBytes(key, to: &buffer)
        if flags.count > 0 {
            buffer.append(byte: 0x20)
            buffer.append(flags)
        }
        buffer.append("\r\n")
    }

    /// `ms <key> <datalen> [<flags>]\r\n<value>\r\n`
    public static func appendMetaSet(_ key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer,
                                     flags: StaticString = "", to buffer: inout ByteBuffer) {
        appendMetaSet(key, value: value,
                      flags: UnsafeRawBufferPointer(start: flags.utf8Start, count: flags.utf8CodeUnitCount), to: &buffer)
    }

    /// `ms <key> <datalen> [<flags>]\r\n<value>\r\n` with flag text from memory.
    public static func appendMetaSet(_ key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer,
                                     flags: UnsafeRawBufferPointer, to buffer: inout ByteBuffer) {
        buffer.append("ms ")
        appendKeyBytes(key, to: &buffer)
        buffer.append(byte: 0x20)
        buffer.appendDecimal(UInt64(value.count))
        if flags.count > 0 {
            buffer.append(byte: 0x20)
            buffer.append(flags)
        }
        buffer.append("\r\n")
        buffer.append(value)
        buffer.append("\r\n")
    }

    /// `mn\r\n`
    public static func appendMetaNoop(to buffer: inout ByteBuffer) {
        buffer.append("mn\r\n")
    }

    static func appendKeyBytes(_ key: UnsafeRawBufferPointer, to buffer: inout ByteBuffer) {
        // memcached takes any bytes but space as a key; a NUL or a line end would
        // cut the line short.
        assert(key.count > 0 && key.count <= 250 && !key.contains(0x20) && !key.contains(0x0A) && !key.contains(0),
               "memcached would not accept this key")
        buffer.append(key)
    }

    // MARK: A proxy's own requests

    // The requests a proxy makes on its own to move or copy a key (warm-up,
    // refill, a compare-and-swap result copied to other replicas) are meta
    // commands, so a key a client sent in base64 (`b`) travels the same way.

    /// `mg <key>[ b] v f t\r\n`: the value with its client flags and remaining TTL.
    public static func appendFetch(_ key: UnsafeRawBufferPointer, base64: Bool, to buffer: inout ByteBuffer) {
        buffer.append("mg ")
        appendKeyBytes(key, to: &buffer)
        buffer.append(base64 ? " b v f t c\r\n" : " v f t c\r\n")
    }

    /// `mg <key>[ b] c\r\n`: the CAS of a key's copy, to tell whether it
    /// changed since it was read (`HD c<cas>`, or `EN` when it is gone).
    public static func appendCasProbe(_ key: UnsafeRawBufferPointer, base64: Bool, to buffer: inout ByteBuffer) {
        buffer.append("mg ")
        appendKeyBytes(key, to: &buffer)
        buffer.append(base64 ? " b c\r\n" : " c\r\n")
    }

    /// `md <key>[ b] C<cas>\r\n`: deletes a copy only if it is still the one
    /// with that CAS (a copy the proxy made, not a value written since).
    public static func appendConditionalDelete(_ key: UnsafeRawBufferPointer, base64: Bool, cas: UInt64,
                                               to buffer: inout ByteBuffer) {
        appendMetaHead("md ", key, base64: base64, flag: " C", to: &buffer)
        buffer.appendDecimal(cas)
        buffer.append("\r\n")
    }

    /// `ms <key> <bytes>[ b] F<flags> T<exptime>[ ME][ C<cas>][ c]\r\n<value>\r\n`:
    /// a copy of a value; `onlyIfAbsent` stores it only where the key is
    /// missing (mode E, memcached's add), so an older copy never replaces a
    /// newer write; `ifCas` only over the copy with that CAS (one read a moment
    /// ago, not a value written since); `returnCas` asks for the stored copy's
    /// CAS (`HD c<cas>`).
    public static func appendCopy(_ key: UnsafeRawBufferPointer, base64: Bool, value: UnsafeRawBufferPointer,
                                  clientFlags: UInt32, exptime: Int64, onlyIfAbsent: Bool, ifCas: UInt64? = nil,
                                  returnCas: Bool = false, to buffer: inout ByteBuffer) {
        buffer.append("ms ")
        appendKeyBytes(key, to: &buffer)
        buffer.append(byte: 0x20)
        buffer.appendDecimal(UInt64(value.count))
        if base64 { buffer.append(" b") }
        buffer.append(" F")
        buffer.appendDecimal(UInt64(clientFlags))
        buffer.append(" T")
        buffer.appendDecimal(exptime)
        if onlyIfAbsent { buffer.append(" ME") }
        if let ifCas {
            buffer.append(" C")
            buffer.appendDecimal(ifCas)
        }
        if returnCas { buffer.append(" c") }
        buffer.append("\r\n")
        buffer.append(value)
        buffer.append("\r\n")
    }

    /// `mg <key>[ b] T<exptime>\r\n`: sets a key's expiry where it is held,
    /// as the `gat` or `mg ... T` a client sent to another copy did there.
    public static func appendTouchCopy(_ key: UnsafeRawBufferPointer, base64: Bool, exptime: Int64,
                                       to buffer: inout ByteBuffer) {
        appendMetaHead("mg ", key, base64: base64, flag: " T", to: &buffer)
        buffer.appendDecimal(exptime)
        buffer.append("\r\n")
    }

    /// `<verb><key>[ b]<flag>`: the start of a meta command whose last flag
    /// carries a number, which the caller appends.
    private static func appendMetaHead(_ verb: StaticString, _ key: UnsafeRawBufferPointer, base64: Bool,
                                       flag: StaticString, to buffer: inout ByteBuffer) {
        buffer.append(verb)
        appendKeyBytes(key, to: &buffer)
        if base64 { buffer.append(" b") }
        buffer.append(flag)
    }

    /// `md <key>[ b]\r\n`
    public static func appendMetaDelete(_ key: UnsafeRawBufferPointer, base64: Bool, to buffer: inout ByteBuffer) {
        buffer.append("md ")
        appendKeyBytes(key, to: &buffer)
        buffer.append(base64 ? " b\r\n" : "\r\n")
    }
}
