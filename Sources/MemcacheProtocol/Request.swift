/// One parsed request. Ranges are byte offsets into the buffer that was parsed,
/// so nothing is copied and nothing allocated; they are valid only as long as
/// those bytes stay where they are.
public struct Request: Sendable {
    public var command: Command
    /// Bytes this request occupies in the buffer: the line, its `\n`, and the data block with its `\r\n`.
    public var length: Int
    /// The command line without its line ending.
    public var line: Range<Int>
    /// The (first) key. Empty for commands without a key (and for `gat <exptime>` with
    /// no key, which memcached answers with just `END`). Meta commands with `b`: the key
    /// as sent, in base64 (see `meta.decodedKeyLength` and `Base64.decode`).
    public var key: Range<Int>
    /// For get/gets/gat/gats: the span of space-separated keys (iterate with `KeyTokens`;
    /// it may end with spaces). Every key in it has already been checked against the
    /// key length limit. Keys are any bytes but space (memcached does not validate them).
    public var keys: Range<Int>
    /// Client flags of a storage command (`ms`: the `F` flag), after memcached's 64-bit
    /// parse truncated to 32 bits (`4294967296` is 0).
    public var flags: UInt32
    /// Expiry as memcached reads it: a 64-bit number truncated to 32 bits, sign kept
    /// (seconds; 1...2592000 relative, larger absolute, negative = already expired;
    /// `4294967296` is 0 = never). Storage commands, touch, gat/gats, flush_all delay;
    /// meta `T` (0 when absent: check `meta.has("T")`).
    public var exptime: Int64
    /// `cas <unique>`; meta `C`.
    public var casUnique: UInt64
    /// incr/decr delta; meta `D`.
    public var delta: UInt64
    /// The value of a storage command, without its trailing `\r\n`.
    public var data: Range<Int>
    /// `noreply` was the last token (classic commands). Always false for meta commands:
    /// their `q` flag (`meta.has(UInt8(ascii: "q"))`) hides only some replies.
    public var noreply: Bool
    /// Everything after the command token, for commands with free-form arguments
    /// (stats, verbosity, slabs, lru, lru_crawler, watch, shutdown, cache_memlimit, flush_all):
    /// from the first argument to the end of the last one (no trailing spaces); empty
    /// (at the end of the line) when there is none. Iterate with `KeyTokens`.
    public var arguments: Range<Int>
    /// The numeric argument of `verbosity <level>` and `cache_memlimit <megabytes>`,
    /// parsed like memcached (32-bit, `4294967360` truncates to 64).
    public var numericArgument: UInt64
    /// Meta-command flags; empty for classic commands.
    public var meta: MetaFlags

    public init(command: Command) {
        self.command = command
        self.length = 0
        self.line = 0..<0
        self.key = 0..<0
        self.keys = 0..<0
        self.flags = 0
        self.exptime = 0
        self.casUnique = 0
        self.delta = 0
        self.data = 0..<0
        self.noreply = false
        self.arguments = 0..<0
        self.numericArgument = 0
        self.meta = MetaFlags()
    }
}

/// The flags of a meta command (`mg`, `ms`, `md`, `ma`, `me`), parsed and validated
/// for that command. Flags that carry a token have it decoded here; `tokens`
/// keeps their order for echoing return flags.
///
/// Like memcached 1.6.18, every meta command accepts the whole flag set
/// `b N T R l O P L k s t c f v h u q F C M J D I` (`mg k F5 M1` is valid; a command
/// ignores flags it has no use for), and each flag at most once. `me` only looks
/// for a `b` right after the key; its other tokens are in `tokens`, unchecked.
public struct MetaFlags: Sendable, Equatable {
    /// One bit per flag letter present: `A`...`Z` are bits 0...25, `a`...`z` bits 26...51.
    public var present: UInt64 = 0
    /// The span of the flag tokens on the line (after key and, for `ms`, datalen).
    public var tokens: Range<Int> = 0..<0
    /// `O<opaque>`: the opaque token's bytes, without the `O`.
    public var opaque: Range<Int> = 0..<0
    /// `T<ttl>` (mg, ms, md, ma).
    public var ttl: Int64 = 0
    /// `N<ttl>`: vivify on miss (mg, ma).
    public var vivifyTTL: Int64 = 0
    /// `R<ttl>`: win the recache when the remaining TTL is below this (mg).
    public var recacheTTL: Int64 = 0
    /// `C<cas>`: compare-and-swap value (ms, md, ma).
    public var compareCas: UInt64 = 0
    /// `F<flags>`: client flags to store (ms).
    public var clientFlags: UInt32 = 0
    /// `M<mode>`: the mode letter (ms: E A P R S; ma: I + D -), as the byte sent.
    public var mode: UInt8 = 0
    /// `D<delta>` (ma), default 1.
    public var delta: UInt64 = 1
    /// `J<initial>` (ma), default 0.
    public var initial: UInt64 = 0
    /// With `b`: the length of the base64-decoded key (decode it with `Base64.decode`);
    /// 0 without `b`.
    public var decodedKeyLength: Int = 0

    public init() {}

    @inlinable public static func bit(_ letter: UInt8) -> UInt64 {
        if letter >= UInt8(ascii: "A") && letter <= UInt8(ascii: "Z") { return 1 << UInt64(letter - UInt8(ascii: "A")) }
        if letter >= UInt8(ascii: "a") && letter <= UInt8(ascii: "z") { return 1 << UInt64(letter - UInt8(ascii: "a") + 26) }
        return 0
    }

    /// True when the flag `letter` (e.g. `UInt8(ascii: "v")`) was sent.
    @inlinable public func has(_ letter: UInt8) -> Bool { present & MetaFlags.bit(letter) != 0 }
}

/// Iterates the space-separated tokens of a span of a buffer (keys of a multi-get,
/// arguments, meta flags) without allocating.
public struct KeyTokens: Sequence, IteratorProtocol {
    @usableFromInline let bytes: UnsafeRawBufferPointer
    @usableFromInline var position: Int
    @usableFromInline let end: Int

    @inlinable public init(_ bytes: UnsafeRawBufferPointer, _ span: Range<Int>) {
        self.bytes = bytes
        self.position = span.lowerBound
        self.end = span.upperBound
    }

    @inlinable public mutating func next() -> Range<Int>? {
        while position < end && bytes[position] == UInt8(ascii: " ") { position += 1 }
        if position >= end { return nil }
        let start = position
        while position < end && bytes[position] != UInt8(ascii: " ") { position += 1 }
        return start..<position
    }
}

extension Request {
    /// Makes this request a fresh `Request(command:)`, field by field: assigning a new
    /// value would build a temporary and memcpy its ~250 bytes.
    @inline(__always)
    mutating func reset(_ command: Command) {
        self.command = command
        length = 0
        line = 0..<0
        key = 0..<0
        keys = 0..<0
        flags = 0
        exptime = 0
        casUnique = 0
        delta = 0
        data = 0..<0
        noreply = false
        arguments = 0..<0
        numericArgument = 0
        meta.reset()
    }
}

extension MetaFlags {
    /// Makes these flags a fresh `MetaFlags()`, field by field.
    @inline(__always)
    mutating func reset() {
        present = 0
        tokens = 0..<0
        opaque = 0..<0
        ttl = 0
        vivifyTTL = 0
        recacheTTL = 0
        compareCas = 0
        clientFlags = 0
        mode = 0
        delta = 1
        initial = 0
        decodedKeyLength = 0
    }
}
