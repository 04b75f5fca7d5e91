/// What the parser made of the bytes at the front of a buffer.
public enum ParseOutcome: Sendable {
    /// A complete request (and its data block); consume `request.length` bytes.
    case request(Request)
    /// Not enough bytes yet. `totalLength`, when known, is the size the whole
    /// request will have (line plus data block), so the caller can grow its buffer.
    case needMoreData(totalLength: Int?)
    /// Answer `error` (unless `quiet`: noreply suppressed it), consume `consume`
    /// bytes now, then drop the next `swallow` bytes as they arrive (a data block
    /// memcached discards). The connection stays usable.
    case invalid(ProtocolError, consume: Int, swallow: Int, quiet: Bool)
    /// A storage request whose value exceeds the item size limit: `request` has its
    /// command, key and noreply set; consume the line (`consume` bytes), drop
    /// `swallow` bytes of data as they arrive. memcached answers `SERVER_ERROR object
    /// too large for cache` (unless noreply) and deletes the key's old value for set and ms.
    case tooLarge(Request, consume: Int, swallow: Int)
    /// The stream cannot be framed (an over-long line, an HTTP request): close the
    /// connection. memcached closes without a reply.
    case close
}

/// Limits the parser enforces, with memcached's defaults.
public struct RequestLimits: Sendable {
    /// Longest key accepted (memcached: 250).
    public var maxKeyLength: Int = 250
    /// memcached's item size limit (`-I`), or nil to accept any size (a proxy
    /// leaves the decision to its backends).
    public var itemSizeMax: Int? = 1024 * 1024
    /// Whether CAS is enabled (`-C` off): it changes memcached's item size accounting.
    public var casEnabled: Bool = true

    public init(maxKeyLength: Int = 250, itemSizeMax: Int? = 1024 * 1024, casEnabled: Bool = true) {
        self.maxKeyLength = maxKeyLength
        self.itemSizeMax = itemSizeMax
        self.casEnabled = casEnabled
    }
}

/// Frames and validates requests at the front of a buffer (implementation pending).
public struct RequestParser: Sendable {
    public var limits: RequestLimits
    public init(limits: RequestLimits) { self.limits = limits }
    public func parse(_ bytes: UnsafeRawBufferPointer) -> ParseOutcome { fatalError("not implemented") }
}
