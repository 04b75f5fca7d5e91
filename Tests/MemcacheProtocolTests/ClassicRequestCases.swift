@testable import MemcacheProtocol

// Classic text commands. Every error expectation below is what memcached 1.6.18
// (Debian 12 binary) answered to the same bytes, checked by hand while writing and
// re-checked by OracleTests (MEMCACHED_ORACLE_PORT) unless the row says oracle: false.

let k250 = rep("k", 250)
let k251 = rep("k", 251)

let framingCases: [RequestCase] = [
    RequestCase("get foo\r\n", req(.get, key: "foo")),
    RequestCase("get foo\n", req(.get, key: "foo")),                                  // bare \n ends a line
    RequestCase("get a b c\r\n", req(.get, key: "a", keys: ["a", "b", "c"])),
    RequestCase("  get   a  b  \r\n", req(.get, key: "a", keys: ["a", "b"])),         // runs of spaces
    RequestCase("get k k\r\n", req(.get, key: "k", keys: ["k", "k"])),                 // duplicates kept
    RequestCase("get a\tb\r\n", req(.get, key: "a\\x09b")),                           // TAB is not a separator
    RequestCase("get \\x01\\xc3\\xa9\r\n", req(.get, key: "\\x01\\xc3\\xa9")),          // keys are not validated
    RequestCase("get foo\r\r\n", req(.get, key: "foo\\r")),                             // one \r stripped
    RequestCase("get a\\x00b c\r\n", req(.get, key: "a")),                            // NUL ends the C string
    RequestCase("gat 0\\x00 k\r\n", req(.gat, exptime: 0)),                              // ... so no key: END
    RequestCase("GET foo\r\n", ERROR),                                                 // case-sensitive
    RequestCase("get\tfoo\r\n", ERROR),
    RequestCase("\r\n", ERROR),
    RequestCase("\n", ERROR),
    RequestCase("   \r\n", ERROR),
    RequestCase("x\r\n", ERROR),                                                       // 1-byte command
    RequestCase("mget a\r\n", ERROR),
    RequestCase("bget a b\r\n", req(.get, key: "a", keys: ["a", "b"])),
    RequestCase("bget\r\n", ERROR),
    RequestCase("misbehave\r\n", ERROR),                                               // debug builds only
    RequestCase("misbehave HTTP/1.0\r\n", .close),
    RequestCase("GET / HTTP/1.1\r\n", .close),
    RequestCase("HTTP/1.1\r\n", .close),
    RequestCase("fx HTTP/\r\n", .close),
    RequestCase("fx HTTP\r\n", ERROR),
    RequestCase("fx xHTTP/\r\n", ERROR),
    RequestCase("zz http/1.1\r\n", ERROR),
    RequestCase("foo HTTP/1.1 x\r\n", ERROR),                                          // only the last token counts
    RequestCase("gx HTTP/1.1\r\n", ERROR),                                             // g/s/a/c/i/d/t branches say ERROR
    RequestCase("setx HTTP/1.1\r\n", ERROR),
    RequestCase("tx HTTP/1.1\r\n", ERROR),
    RequestCase("mx HTTP/1.1\r\n", ERROR),                                             // two-letter m: meta branch
    RequestCase("mxy HTTP/1.1\r\n", .close),
    RequestCase("replacex HTTP/1.1\r\n", .close),
    RequestCase("get / HTTP/1.1\r\n", req(.get, key: "/", keys: ["/", "HTTP/1.1"])),
    // 23 tokens are parsed; the 23rd is the "last" one.
    RequestCase("xx a b c d e f g h i j k l m n o p q r s t u HTTP/1.1 y z\r\n", .close),
    RequestCase("xx a b c d e f g h i j k l m n o p q r s t u v HTTP/1.1 y z\r\n", ERROR),
    RequestCase("refresh_certs\r\n", req(.refreshCerts)),
    RequestCase("refresh_certs noreply\r\n", req(.refreshCerts)),
    RequestCase("refresh_certs HTTP/1.1\r\n", req(.refreshCerts)),
    RequestCase("debugtime 1\r\n", ERROR),
    RequestCase("extstore x\r\n", ERROR),
    // Later in a text stream a 0x80 line is an unknown command (the connection,
    // not the parser, closes on a binary-protocol first byte).
    RequestCase("\\x80\r\n", ERROR),
]

let storageCases: [RequestCase] = [
    RequestCase("set k 0 0 1\r\nx\r\n", req(.set, key: "k", data: "x")),
    RequestCase("set k 0 0 1\nx\r\n", req(.set, key: "k", data: "x")),
    RequestCase("set k 0 0 0\r\n\r\n", req(.set, key: "k", data: "")),
    RequestCase("set k 0 0 4\r\na\r\nb\r\n", req(.set, key: "k", data: "a\\r\\nb")),     // data is raw
    RequestCase("set k 1 2 1 noreply\r\nx\r\n", req(.set, key: "k", flags: 1, exptime: 2, data: "x", noreply: true)),
    RequestCase("set k 0 0 1 norepl\r\nx\r\n", req(.set, key: "k", data: "x")),         // misspelled: ignored
    RequestCase("add k 5 0 2\r\nab\r\n", req(.add, key: "k", flags: 5, data: "ab")),
    RequestCase("replace k 0 100 1\r\nx\r\n", req(.replace, key: "k", exptime: 100, data: "x")),
    RequestCase("append k 0 0 1\r\nx\r\n", req(.append, key: "k", data: "x")),
    RequestCase("prepend k 0 0 1 noreply\r\nx\r\n", req(.prepend, key: "k", data: "x", noreply: true)),
    RequestCase("cas k 0 0 1 5\r\nx\r\n", req(.cas, key: "k", cas: 5, data: "x")),
    RequestCase("cas k 0 0 1 18446744073709551615 noreply\r\nx\r\n",
                req(.cas, key: "k", cas: 18446744073709551615, data: "x", noreply: true)),
    RequestCase("set \(k250) 0 0 1\r\nx\r\n", req(.set, key: k250, data: "x")),
    // flags: strtoul on LP64, truncated to 32 bits.
    RequestCase("set k 4294967296 0 1\r\nx\r\n", req(.set, key: "k", flags: 0, data: "x")),
    RequestCase("set k 4294967295 0 1\r\nx\r\n", req(.set, key: "k", flags: 4294967295, data: "x")),
    RequestCase("set k 18446744073709551615 0 1\r\nx\r\n", req(.set, key: "k", flags: 4294967295, data: "x")),
    RequestCase("set k -18446744073709551615 0 1\r\nx\r\n", req(.set, key: "k", flags: 1, data: "x")),
    RequestCase("set k -9223372036854775809 0 1\r\nx\r\n", req(.set, key: "k", flags: 4294967295, data: "x")),
    RequestCase("set k +5 0 1\r\nx\r\n", req(.set, key: "k", flags: 5, data: "x")),
    RequestCase("set k 5\tzz 0 1\r\nx\r\n", req(.set, key: "k", flags: 5, data: "x")),   // stops at white space
    RequestCase("set k 5\rzz 0 1\r\nx\r\n", req(.set, key: "k", flags: 5, data: "x")),
    RequestCase("set k \t5 0 1\r\nx\r\n", req(.set, key: "k", flags: 5, data: "x")),
    RequestCase("set k 18446744073709551616 0 1\r\nx\r\n", err(.badCommandLineFormat)),
    RequestCase("set k -1 0 1\r\nx\r\n", err(.badCommandLineFormat)),
    RequestCase("set k abc 0 1\r\nx\r\n", err(.badCommandLineFormat)),
    RequestCase("set k abc 0 1 noreply\r\nx\r\n", err(.badCommandLineFormat, quiet: true)),
    // exptime: strtol truncated to int32.
    RequestCase("set k 0 -1 1\r\nx\r\n", req(.set, key: "k", exptime: -1, data: "x")),
    RequestCase("set k 0 4294967296 1\r\nx\r\n", req(.set, key: "k", exptime: 0, data: "x")),
    RequestCase("set k 0 2147483648 1\r\nx\r\n", req(.set, key: "k", exptime: -2147483648, data: "x")),
    RequestCase("set k 0 -9223372036854775808 1\r\nx\r\n", req(.set, key: "k", exptime: 0, data: "x")),
    RequestCase("set k 0 9223372036854775808 1\r\nx\r\n", err(.badCommandLineFormat)),
    RequestCase("set k 0 1.5 1\r\nx\r\n", err(.badCommandLineFormat)),
    // bytes: int32; bad values swallow nothing.
    RequestCase("set k 0 0 +1\r\nx\r\n", req(.set, key: "k", data: "x")),
    RequestCase("set k 0 0 4294967297\r\nx\r\n", req(.set, key: "k", data: "x")),
    RequestCase("set k 0 0 1\r\r\nx\r\n", req(.set, key: "k", data: "x")),              // token "1\r"
    RequestCase("set k 0 0 -1\r\nx\r\n", err(.badCommandLineFormat)),
    RequestCase("set k 0 0 2147483646\r\n", err(.badCommandLineFormat)),
    RequestCase("set k 0 0 0x1\r\nx\r\n", err(.badCommandLineFormat)),
    RequestCase("set k 0 0 noreply\r\nx\r\n", err(.badCommandLineFormat, quiet: true)),
    RequestCase("cas k 0 0 1 abc\r\nx\r\n", err(.badCommandLineFormat)),
    RequestCase("cas k 0 0 1 -1\r\nx\r\n", err(.badCommandLineFormat)),
    // token counts
    RequestCase("set k 0 0\r\n", ERROR),
    RequestCase("set k 0 0 1 noreply extra\r\nx\r\n", ERROR),
    RequestCase("cas k 0 0 1\r\n", ERROR),
    RequestCase("cas k 0 0 1 1 noreply x\r\nx\r\n", ERROR),
    RequestCase("set a\\x00b 0 0 1\r\nx\r\n", ERROR),
    // keys
    RequestCase("set \(k251) 0 0 1\r\nx\r\n", err(.badCommandLineFormat)),
    RequestCase("set \(k251) 0 0 1 noreply\r\nx\r\n", err(.badCommandLineFormat, quiet: true)),
    // data block framing: exactly <bytes>+2 are read.
    RequestCase("set k 0 0 3\r\nabcd\r\n", err(.badDataChunk, consume: 18)),
    RequestCase("set k 0 0 3 noreply\r\nabcd\r\n", err(.badDataChunk, consume: 26, quiet: true)),
    RequestCase("set k 0 0 1\r\nx\n\n", err(.badDataChunk, consume: 16)),
    RequestCase("set k 0 0 1\r\nxyz", err(.badDataChunk, consume: 16)),
]

let retrievalCases: [RequestCase] = [
    RequestCase("gets a b\r\n", req(.gets, key: "a", keys: ["a", "b"])),
    RequestCase("gets  a\r\n", req(.gets, key: "a")),
    RequestCase("gat 100 a b\r\n", req(.gat, key: "a", keys: ["a", "b"], exptime: 100)),
    RequestCase("gats -1 a\r\n", req(.gats, key: "a", exptime: -1)),
    RequestCase("gat 4294967296 k\r\n", req(.gat, key: "k", exptime: 0)),
    RequestCase("gat 100\r\n", req(.gat, exptime: 100)),                               // no key: END
    RequestCase("get \(k250)\r\n", req(.get, key: k250)),
    RequestCase("get\r\n", ERROR),
    RequestCase("get  \r\n", ERROR),
    RequestCase("gets\r\n", ERROR),
    RequestCase("gat\r\n", ERROR),
    RequestCase("gats abc\r\n", err(.invalidExptime)),
    RequestCase("gats abc k\r\n", err(.invalidExptime)),
    RequestCase("gat abc \(k251)\r\n", err(.invalidExptime)),
    RequestCase("gat 0 \(k251)\r\n", err(.badCommandLineFormat)),
    RequestCase("get \(k251)\r\n", err(.badCommandLineFormat)),
    RequestCase("get a \(k251) b\r\n", err(.badCommandLineFormat)),
    // Beyond 23 tokens memcached re-tokenizes: unbounded keys, all checked.
    RequestCase("get " + (1...40).map { "key\($0)" }.joined(separator: " ") + "\r\n",
                req(.get, key: "key1", keys: (1...40).map { "key\($0)" })),
    RequestCase("get " + (1...40).map { $0 == 33 ? k251 : "key\($0)" }.joined(separator: " ") + "\r\n",
                err(.badCommandLineFormat)),
]

let otherClassicCases: [RequestCase] = [
    RequestCase("delete k\r\n", req(.delete, key: "k")),
    RequestCase("delete k noreply\r\n", req(.delete, key: "k", noreply: true)),
    RequestCase("delete k 0\r\n", req(.delete, key: "k")),
    RequestCase("delete k 0 noreply\r\n", req(.delete, key: "k", noreply: true)),
    RequestCase("delete\r\n", ERROR),
    RequestCase("delete k a b c\r\n", ERROR),
    RequestCase("delete k 1\r\n", err(.deleteUsage)),
    RequestCase("delete k 1 noreply\r\n", err(.deleteUsage, quiet: true)),
    RequestCase("delete k x y\r\n", err(.deleteUsage)),
    RequestCase("delete k 0 x\r\n", err(.deleteUsage)),
    RequestCase("delete k noreply noreply\r\n", err(.deleteUsage, quiet: true)),
    RequestCase("delete \(k251) 1\r\n", err(.deleteUsage)),                         // arity before key length
    RequestCase("delete \(k251)\r\n", err(.badCommandLineFormat)),
    RequestCase("delete \(k251) noreply\r\n", err(.badCommandLineFormat, quiet: true)),

    RequestCase("incr k 5\r\n", req(.incr, key: "k", delta: 5)),
    RequestCase("decr k 5 noreply\r\n", req(.decr, key: "k", delta: 5, noreply: true)),
    RequestCase("incr k 1 x\r\n", req(.incr, key: "k", delta: 1)),                  // extra token ignored
    RequestCase("incr k 18446744073709551615\r\n", req(.incr, key: "k", delta: 18446744073709551615)),
    RequestCase("incr k -18446744073709551615\r\n", req(.incr, key: "k", delta: 1)),
    RequestCase("incr\r\n", ERROR),
    RequestCase("incr k\r\n", ERROR),
    RequestCase("incr k 1 2 3\r\n", ERROR),
    RequestCase("incr k -1\r\n", err(.invalidDelta)),
    RequestCase("incr k 18446744073709551616\r\n", err(.invalidDelta)),
    RequestCase("decr k abc noreply\r\n", err(.invalidDelta, quiet: true)),
    RequestCase("incr \(k251) abc\r\n", err(.badCommandLineFormat)),

    RequestCase("touch k 10\r\n", req(.touch, key: "k", exptime: 10)),
    RequestCase("touch k 10 noreply\r\n", req(.touch, key: "k", exptime: 10, noreply: true)),
    RequestCase("touch k 10 x\r\n", req(.touch, key: "k", exptime: 10)),
    RequestCase("touch k\r\n", ERROR),
    RequestCase("touch k 1 2 3\r\n", ERROR),
    RequestCase("touch k abc\r\n", err(.invalidExptime)),
    RequestCase("touch k abc noreply\r\n", err(.invalidExptime, quiet: true)),
    RequestCase("touch \(k251) abc\r\n", err(.badCommandLineFormat)),

    RequestCase("flush_all\r\n", req(.flushAll)),
    RequestCase("flush_all 10\r\n", req(.flushAll, exptime: 10, arguments: "10")),
    RequestCase("flush_all -5\r\n", req(.flushAll, exptime: -5, arguments: "-5")),
    RequestCase("flush_all 4294967296\r\n", req(.flushAll, exptime: 0, arguments: "4294967296")),
    RequestCase("flush_all noreply\r\n", req(.flushAll, noreply: true, arguments: "noreply")),
    RequestCase("flush_all 0 x\r\n", req(.flushAll, arguments: "0 x")),
    RequestCase("flush_all 7 noreply\r\n", req(.flushAll, exptime: 7, noreply: true, arguments: "7 noreply")),
    RequestCase("flush_all abc\r\n", err(.invalidExptime)),
    RequestCase("flush_all abc noreply\r\n", err(.invalidExptime, quiet: true)),
    RequestCase("flush_all noreply 5\r\n", err(.invalidExptime)),
    RequestCase("flush_all 1 2 3\r\n", ERROR),
    RequestCase("flush_all abc\r\n", req(.flushAll, arguments: "abc"),
                limits: RequestLimits(flushAllEnabled: false), oracle: false),       // -F: answered by the node

    RequestCase("verbosity 1 2\r\n", req(.verbosity, arguments: "1 2", numeric: 1)),
    RequestCase("verbosity 1 noreply\r\n", req(.verbosity, noreply: true, arguments: "1 noreply", numeric: 1)),
    RequestCase("verbosity\r\n", ERROR),
    RequestCase("verbosity 1 2 3\r\n", ERROR),
    RequestCase("verbosity x\r\n", err(.badCommandLineFormat)),
    RequestCase("verbosity HTTP/1.1\r\n", err(.badCommandLineFormat)),
    RequestCase("verbosity noreply\r\n", err(.badCommandLineFormat, quiet: true)),

    RequestCase("cache_memlimit 5\r\n", req(.cacheMemlimit, arguments: "5", numeric: 5)),
    RequestCase("cache_memlimit 64 x\r\n", req(.cacheMemlimit, arguments: "64 x", numeric: 64)),
    RequestCase("cache_memlimit 4294967360\r\n", req(.cacheMemlimit, arguments: "4294967360", numeric: 64)),
    RequestCase("cache_memlimit\r\n", ERROR),
    RequestCase("cache_memlimit 64 x y\r\n", ERROR),
    RequestCase("cache_memlimit abc\r\n", ERROR),
    RequestCase("cache_memlimit abc noreply\r\n", err(.error, quiet: true)),

    RequestCase("version\r\n", req(.version)),
    RequestCase("version x y\r\n", req(.version)),
    RequestCase("quit\r\n", req(.quit)),
    RequestCase("shutdown\r\n", req(.shutdown)),
    RequestCase("shutdown graceful\r\n", req(.shutdown, arguments: "graceful")),
    RequestCase("stats\r\n", req(.stats)),
    RequestCase("stats reset x  \r\n", req(.stats, arguments: "reset x")),
    RequestCase("stats HTTP/1.1\r\n", req(.stats, arguments: "HTTP/1.1")),
    RequestCase("slabs automove 1\r\n", req(.slabs, arguments: "automove 1")),
    RequestCase("lru mode flat\r\n", req(.lru, arguments: "mode flat")),
    RequestCase("lru\r\n", ERROR),
    RequestCase("lru_crawler crawl all\r\n", req(.lruCrawler, arguments: "crawl all")),
    RequestCase("watch\r\n", req(.watch)),
]
