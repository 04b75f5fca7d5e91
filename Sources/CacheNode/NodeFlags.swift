import MemcacheProtocol

/// What the command line asks for.
public enum NodeLaunch: Sendable {
    case run(NodeSettings, warnings: [String])
    case printAndExit(String)
    case fail(String)
}

/// Reads memcached's command-line flags (with getopt_long's rules, as memcached
/// does, so `-m64`, `-vv` and `--port=11211` work) into `NodeSettings`.
public enum NodeFlags {
    public static let version = MemclusterVersion.release

    static let shortOptions = "p:U:s:a:Al:dru:m:Mc:khivVP:f:n:LD:t:R:Cb:B:I:SFXWY:e:Zo:N:"

    static let longOptions: [(name: String, hasArgument: Bool, short: Character)] = [
        ("port", true, "p"), ("udp-port", true, "U"), ("unix-socket", true, "s"), ("unix-mask", true, "a"),
        ("enable-shutdown", false, "A"), ("listen", true, "l"), ("daemon", false, "d"),
        ("enable-coredumps", false, "r"), ("user", true, "u"), ("memory-limit", true, "m"),
        ("disable-evictions", false, "M"), ("conn-limit", true, "c"), ("lock-memory", false, "k"),
        ("help", false, "h"), ("license", false, "i"), ("verbose", false, "v"), ("version", false, "V"),
        ("pidfile", true, "P"), ("slab-growth-factor", true, "f"), ("slab-min-size", true, "n"),
        ("enable-largepages", false, "L"), ("threads", true, "t"), ("max-reqs-per-event", true, "R"),
        ("disable-cas", false, "C"), ("listen-backlog", true, "b"), ("protocol", true, "B"),
        ("max-item-size", true, "I"), ("enable-sasl", false, "S"), ("disable-flush-all", false, "F"),
        ("disable-dumping", false, "X"), ("disable-watch", false, "W"), ("auth-file", true, "Y"),
        ("memory-file", true, "e"), ("enable-ssl", false, "Z"), ("extended", true, "o"), ("napi-ids", true, "N"),
    ]

    /// Parses `arguments` (including the program name, as in argv).
    public static func parse(_ arguments: [String]) -> NodeLaunch {
        var settings = NodeSettings()
        var warnings: [String] = []
        var udpRequested = false

        var parser = OptionScanner(arguments: Array(arguments.dropFirst()), shortOptions: shortOptions, longOptions: longOptions)
        while let next = parser.next() {
            let letter: Character
            let argument: String
            switch next {
            case .option(let short, let value):
                letter = short
                argument = value ?? ""
            case .unknown(let text):
                return .fail("Illegal argument \"\(text)\"\n\(usage)")
            case .missingArgument(let text):
                return .fail("Option \(text) requires an argument\n\(usage)")
            case .operand(let text):
                return .fail("Unexpected argument \"\(text)\"")
            }
            switch letter {
            case "p":
                guard let port = UInt16(argument) else { return .fail("Invalid port: \(argument)") }
                settings.port = port
            case "U": udpRequested = argument != "0"   // refused after the loop, with -Y's reason first
            case "s", "a":
                return .fail("UNIX sockets are not supported by memcluster-node; listen on TCP with -l and -p.")
            case "A": settings.shutdownEnabled = true
            case "l":
                settings.listenAddresses = argument.split(separator: ",").map { String($0) }.filter { !$0.isEmpty }
                if settings.listenAddresses.isEmpty { return .fail("Invalid listen address: \(argument)") }
            case "d": settings.daemonize = true
            case "r", "k", "L": warnings.append("-\(letter) is accepted and has no effect in memcluster-node")
            case "u": settings.user = argument
            case "m":
                guard let megabytes = parseSize(argument, defaultUnit: 1 << 20), megabytes > 0 else {
                    return .fail("Invalid memory limit: \(argument)")
                }
                settings.memoryLimit = megabytes
            case "M": settings.evictionsDisabled = true
            case "c":
                guard let count = Int(argument), count > 0 else { return .fail("Invalid connection limit: \(argument)") }
                settings.maxConnections = count
            case "h": return .printAndExit(usage)
            case "i": return .printAndExit("memcluster-node: a memcached-compatible cache node. See the project's LICENSE file.")
            case "v": settings.verbosity += 1
            case "V": return .printAndExit("memcached \(version)")
            case "P": settings.pidFile = argument
            case "f", "n": warnings.append("-\(letter) (slab tuning) is accepted and ignored: memcluster-node stores items in segments, not slab classes")
            case "D":
                // memcached takes the first byte and turns per-prefix stats on.
                guard let delimiter = argument.utf8.first else { return .fail("No delimiter specified") }
                settings.prefixDelimiter = delimiter
                settings.detailEnabled = true
            case "t":
                guard let count = Int(argument), count > 0 else { return .fail("Number of threads must be greater than 0") }
                settings.threads = min(count, 256)
            case "R":
                guard let count = Int(argument), count > 0 else { return .fail("Number of requests per event must be greater than 0") }
                settings.requestsPerEvent = count
            case "C": settings.casEnabled = false
            case "b":
                guard let backlog = Int32(argument), backlog > 0 else { return .fail("Invalid listen backlog: \(argument)") }
                settings.listenBacklog = backlog
            case "B":
                switch argument {
                case "ascii", "auto": break
                case "binary": return .fail("The binary protocol is not supported by memcluster-node; use -B ascii.")
                default: return .fail("Invalid value for binding protocol: \(argument)\n -- should be one of auto, binary, or ascii")
                }
            case "I":
                guard let size = parseSize(argument, defaultUnit: 1) else { return .fail("Invalid max item size: \(argument)") }
                settings.itemSizeMax = size
            case "Z": settings.tlsEnabled = true
            case "Y": settings.authFile = argument
            case "S", "e":
                return .fail("-\(letter) (SASL, authentication, TLS, memory files) is not supported by memcluster-node.")
            case "F": settings.flushEnabled = false
            case "X": settings.dumpingEnabled = false
            case "W": settings.watchEnabled = false
            case "N": warnings.append("-N (NAPI ids) is accepted and ignored")
            case "o":
                if let failure = applyExtendedOptions(argument, to: &settings, warnings: &warnings) { return .fail(failure) }
            default:
                return .fail("Illegal argument \"-\(letter)\"\n\(usage)")
            }
        }
        if udpRequested {
            if settings.authFile != nil { return .fail("Cannot use UDP with ascii authentication enabled (-U 0 to disable)") }
            return .fail("UDP is not served by memcluster-node (it is off in memcached too unless -U is given); use -U 0 or leave it out.")
        }
        if let problem = settings.validate() { return .fail(problem) }
        return .run(settings, warnings: warnings)
    }

    /// `-o key=value,key2,...`. Unknown keys warn instead of stopping the node.
    static func applyExtendedOptions(_ list: String, to settings: inout NodeSettings, warnings: inout [String]) -> String? {
        for entry in list.split(separator: ",") {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            let key = parts[0]
            let value = parts.count > 1 ? parts[1] : nil
            switch key {
            case "idle_timeout":
                guard let seconds = value.flatMap({ Int($0) }), seconds >= 0 else { return "Invalid idle_timeout: \(value ?? "")" }
                settings.idleTimeoutSeconds = seconds
            case "shutdown_grace_ms":
                guard let milliseconds = value.flatMap({ Int($0) }), milliseconds >= 0 else {
                    return "Invalid shutdown_grace_ms: \(value ?? "")"
                }
                settings.shutdownGraceMilliseconds = milliseconds
            case "request_line_max":
                guard let bytes = value.flatMap({ parseSize($0, defaultUnit: 1) }), bytes >= 2048 else {
                    return "Invalid request_line_max: \(value ?? "") (a size of at least 2048 bytes, k/m suffix allowed)"
                }
                settings.requestLineMax = bytes
            case "ssl_chain_cert": settings.tls.chainCertificate = value
            case "ssl_key": settings.tls.privateKey = value
            case "ssl_ca_cert": settings.tls.caCertificate = value
            case "ssl_ciphers": settings.tls.ciphers = value
            case "ssl_verify_mode":
                guard let mode = value.flatMap({ Int($0) }), (0...3).contains(mode) else {
                    return "Invalid ssl_verify_mode: \(value ?? "") (0 none, 1 request, 2 require, 3 once)"
                }
                settings.tls.verifyMode = mode
            case "ssl_min_version":
                guard let version = value.flatMap({ Int($0) }), (0...3).contains(version) else {
                    return "Invalid ssl_min_version: \(value ?? "") (0 tlsv1.0 ... 3 tlsv1.3)"
                }
                settings.tls.minimumVersion = version
            case "ssl_keyformat":
                // PEM (1) only: DER and ENGINE keys are not loaded.
                guard value == "1" else { return "Invalid ssl_keyformat: \(value ?? "") (only 1, PEM, is supported)" }
            case "ssl_wbuf_size":
                guard let kilobytes = value.flatMap({ Int($0) }), kilobytes > 0 else {
                    return "Invalid ssl_wbuf_size: \(value ?? "")"
                }
                settings.tlsWriteBufferKilobytes = kilobytes
            case "ssl_session_cache": settings.tlsSessionCache = true
            case "ssl_kernel_tls": settings.tlsKernelOffload = true
            case "lru_crawler":
                settings.crawlerEnabled = true
            case "no_lru_crawler":
                settings.crawlerEnabled = false
            case "hashpower", "maxconns_fast", "no_maxconns_fast", "tail_repair_time", "hash_algorithm",
                 "lru_crawler_sleep", "lru_crawler_tocrawl", "lru_maintainer",
                 "no_lru_maintainer", "hot_lru_pct", "warm_lru_pct", "hot_max_factor", "warm_max_factor",
                 "temporary_ttl", "slab_reassign", "slab_automove", "slab_automove_ratio", "slab_automove_window",
                 "slab_chunk_max", "track_sizes", "no_hashexpand", "modern", "no_modern", "read_buf_mem_limit",
                 "watcher_logbuf_size", "worker_logbuf_size", "sock_cookie_id", "no_inline_ascii_resp":
                settings.ignoredExtendedOptions.append(String(entry))
            default:
                warnings.append("Ignoring unknown extended option \"\(key)\"")
            }
        }
        return nil
    }

    /// A size with an optional k/m/g suffix (`-I 2m`, `-m 64`); `defaultUnit` scales a bare number.
    static func parseSize(_ text: String, defaultUnit: Int) -> Int? {
        guard let last = text.last else { return nil }
        let multiplier: Int
        var digits = Substring(text)
        switch last {
        case "k", "K": multiplier = 1 << 10; digits = digits.dropLast()
        case "m", "M": multiplier = 1 << 20; digits = digits.dropLast()
        case "g", "G": multiplier = 1 << 30; digits = digits.dropLast()
        default: multiplier = defaultUnit
        }
        guard let value = Int(digits), value >= 0 else { return nil }
        let (result, overflow) = value.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : result
    }

    public static let usage = """
    memcluster-node \(version): a memcached-compatible cache node
    -p, --port=<num>          TCP port to listen on (default: 11211; 0 picks a free one)
    -U, --udp-port=<num>      UDP port: only 0 (off) is accepted
    -l, --listen=<addr>       addresses to listen on, comma separated (default: 127.0.0.1)
    -A, --enable-shutdown     enable the ascii "shutdown" command
    -d, --daemon              run in the background
    -u, --user=<user>         switch to this user when started as root
    -m, --memory-limit=<num>  item memory in megabytes (default: 64)
    -M, --disable-evictions   return an error when memory is full instead of evicting
    -c, --conn-limit=<num>    max simultaneous connections (default: 1024)
    -v, --verbose             verbose (-vv: very verbose)
    -h, --help                print this help and exit
    -V, --version             print version and exit
    -P, --pidfile=<file>      write the process id to <file>
    -t, --threads=<num>       worker threads (default: 4)
    -R, --max-reqs-per-event  accepted for compatibility (default: 20)
    -C, --disable-cas         disable CAS
    -b, --listen-backlog=<n>  listen backlog (default: 1024)
    -B, --protocol=<name>     ascii or auto (text and meta protocol); binary is not served
    -I, --max-item-size=<n>   max item size, k/m suffix allowed (default: 1m, min: 1k, max: 1024m)
    -D <char>                 key prefix delimiter for `stats detail` (default: ":"); turns per-prefix stats on
    -F, --disable-flush-all   disable flush_all
    -X, --disable-dumping     disable stats cachedump and lru_crawler metadump
    -W, --disable-watch       accepted for compatibility
    -Y, --auth-file=<file>    memcached's ASCII authentication: user:password lines; a connection
                              sends `set <any key> 0 0 <n>` with `<user> <password>` as data first
    -Z, --enable-ssl          serve TLS on every -l address but those written notls:<addr>[:port];
                              needs -o ssl_chain_cert=<pem>,ssl_key=<pem>; also ssl_ca_cert=<pem>,
                              ssl_verify_mode=0|1|2|3 (client certificates: none, asked, required,
                              required once), ssl_min_version=0..3 (default 2: TLS 1.2), ssl_ciphers=
    -o, --extended            comma separated extended options: idle_timeout=<s>;
                              request_line_max=<size> (default 2m: a longer request
                              line gets CLIENT_ERROR line too long and a close);
                              shutdown_grace_ms=<ms> (default 5000: on SIGTERM, answer
                              what was read and exit once clients close, or after this);
                              no_lru_crawler (lru_crawler crawl and metadump refused
                              until `lru_crawler enable`);
                              memcached's slab/LRU tuning options are accepted and ignored,
                              unknown ones are reported and ignored
    """
}
