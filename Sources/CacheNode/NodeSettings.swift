import EventLoop

/// Everything the node's flags decide, with memcached's defaults.
public struct NodeSettings: Sendable {
    /// TCP port (`-p`); 0 picks a free port (printed at start-up).
    public var port: UInt16 = 11211
    /// Addresses to listen on (`-l a,b`). Default loopback, unlike memcached:
    /// a cache with no authentication should not face a network by accident.
    public var listenAddresses: [String] = ["127.0.0.1"]
    /// Item memory budget in bytes (`-m`, megabytes).
    public var memoryLimit: Int = 64 << 20
    /// Maximum simultaneous client connections (`-c`).
    public var maxConnections: Int = 1024
    /// Worker threads, each with its own event loop (`-t`).
    public var threads: Int = 4
    /// Largest item (`-I`).
    public var itemSizeMax: Int = 1 << 20
    /// `-v` count.
    public var verbosity: Int = 0
    /// `-M`: refuse stores instead of evicting when memory is full.
    public var evictionsDisabled = false
    /// `-C`.
    public var casEnabled = true
    /// `-F` turns flush_all off.
    public var flushEnabled = true
    /// `-A` turns the shutdown command on.
    public var shutdownEnabled = false
    /// `-X` disables `stats cachedump` and `lru_crawler metadump`.
    public var dumpingEnabled = true
    /// `-o no_lru_crawler` starts with `lru_crawler crawl` and `metadump`
    /// refused (memcached's crawler thread not started); `-o lru_crawler` is the default.
    public var crawlerEnabled = true
    /// `-W` disables watch (accepted; watch is not served).
    public var watchEnabled = true
    /// `-R`: requests handled per event before yielding.
    public var requestsPerEvent: Int = 20
    /// `-b`.
    public var listenBacklog: Int32 = 1024
    /// `-P`: write the process id here.
    public var pidFile: String?
    /// `-u`: user to switch to when started as root.
    public var user: String?
    /// `-d`: detach and run in the background.
    public var daemonize = false
    /// `-D <char>`: the byte that ends a key's prefix for `stats detail`.
    public var prefixDelimiter: UInt8 = UInt8(ascii: ":")
    /// Per-prefix statistics counting from the start (`-D` turns it on, as in memcached).
    public var detailEnabled = false
    /// `-o idle_timeout=N`: close client connections idle this long (0 = never).
    public var idleTimeoutSeconds: Int = 0
    /// `-o request_line_max=SIZE`: the longest request line (a multi-get's keys
    /// included) before the client gets `CLIENT_ERROR line too long` and is
    /// disconnected. memcached has no such bound.
    public var requestLineMax: Int = 2 << 20
    /// `-o shutdown_grace_ms=N`: on SIGTERM or SIGINT the node stops accepting,
    /// answers what it has read, and exits once its clients have closed or
    /// after this long.
    public var shutdownGraceMilliseconds: Int = 5000
    /// Extended options given with `-o` that the node does not act on (kept for `stats settings`).
    public var ignoredExtendedOptions: [String] = []
    /// `-Y <file>`: memcached's ASCII authentication (`AsciiAuthentication`).
    public var authFile: String?
    /// `-Z`: listeners speak TLS (but those given as `-l notls:<addr>`).
    public var tlsEnabled = false
    /// `-o ssl_chain_cert=,ssl_key=,ssl_ca_cert=,ssl_verify_mode=,ssl_ciphers=,ssl_min_version=`.
    public var tls = TLSServerSettings()
    /// `-o ssl_wbuf_size=` (KiB), `ssl_session_cache`, `ssl_kernel_tls`: accepted and
    /// shown by `stats settings`; the node's TLS writes from its own output
    /// buffer, keeps no session cache and does not offload to the kernel.
    public var tlsWriteBufferKilobytes = 16
    public var tlsSessionCache = false
    public var tlsKernelOffload = false

    /// `-l` entries as memcached reads them: `[notls:]<host>[:<port>]` (an
    /// IPv6 host with a port in brackets), the port `-p`'s when not given.
    public var listeners: [(host: String, port: UInt16?, tls: Bool)] {
        listenAddresses.map { entry in
            var rest = Substring(entry)
            let tls = !rest.hasPrefix("notls:") && tlsEnabled
            if rest.hasPrefix("notls:") { rest = rest.dropFirst(6) }
            if rest.hasPrefix("["), let close = rest.firstIndex(of: "]") {
                let host = rest[rest.index(after: rest.startIndex)..<close]
                let after = rest[rest.index(after: close)...]
                return (String(host), after.hasPrefix(":") ? UInt16(after.dropFirst()) : nil, tls)
            }
            if rest.filter({ $0 == ":" }).count == 1, let colon = rest.firstIndex(of: ":"),
               let port = UInt16(rest[rest.index(after: colon)...]) {
                return (String(rest[..<colon]), port, tls)
            }
            return (String(rest), nil, tls)
        }
    }

    public init() {}

    /// memcached's `-I` limits, checked after all flags are read.
    public func validate() -> String? {
        if itemSizeMax < 1024 { return "Item max size cannot be less than 1024 bytes." }
        if itemSizeMax > memoryLimit / 2 { return "Cannot set item size limit higher than 1/2 of memory max." }
        if itemSizeMax > 1024 * 1024 * 1024 { return "Cannot set item size limit higher than a gigabyte." }
        if threads < 1 { return "Number of threads must be greater than 0" }
        if maxConnections < 1 { return "Maximum connections must be greater than 0" }
        return nil
    }
}
