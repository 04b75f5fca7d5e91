// swift-tools-version:6.0
import PackageDescription

// Dependencies point one way:
//   Buffers <- EventLoop, MemcacheProtocol (byte buffers, no I/O)
//   Concurrency (pthread locks) <- EventLoop, CacheStorage and the modules above them
//   EventLoop, MemcacheProtocol <- CacheNode, CacheProxy, LoadGenerator
//   CacheStorage <- CacheNode only; COpenSSLCrypto (MD5 for the ring) <- CacheProxy only;
//   COpenSSL (TLS) <- EventLoop only
//   each program (memcluster-node, -proxy, -bench) is a thin main over its module.
let package = Package(
    name: "memcluster",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "memcluster-node", targets: ["memcluster-node"]),
        .executable(name: "memcluster-proxy", targets: ["memcluster-proxy"]),
        .executable(name: "memcluster-bench", targets: ["memcluster-bench"]),
        .executable(name: "memcluster-admin", targets: ["memcluster-admin"]),
        // Libraries for packages that build on the modules, e.g. Benchmarks/ (micro-benchmarks).
        .library(name: "Buffers", targets: ["Buffers"]),
        .library(name: "MemcacheProtocol", targets: ["MemcacheProtocol"]),
        .library(name: "CacheStorage", targets: ["CacheStorage"]),
        .library(name: "CacheProxy", targets: ["CacheProxy"]),
    ],
    dependencies: [
        // YAML for the proxy's configuration file.
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        // Structured logs (nothing is logged per request).
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        // The proxy's and the load generator's command lines.
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // The load generator's latency histograms.
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CLibevent",
            pkgConfig: "libevent_pthreads",
            providers: [.apt(["libevent-dev"])]
        ),
        // MD5 for the ketama ring, from the system's OpenSSL libcrypto rather than a
        // hand-written digest: the ring must equal libmemcached's and twemproxy's bit
        // for bit, and libcrypto is already on every machine that has libssl-dev.
        .systemLibrary(
            name: "COpenSSLCrypto",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),
        // TLS for client connections (the node's -Z), wrapped once in EventLoop.
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "libssl",
            providers: [.apt(["libssl-dev"])]
        ),
        .target(name: "Buffers"),
        // Locks ThreadSanitizer can follow (pthread), shared by every threaded module.
        .target(name: "Concurrency"),
        .target(name: "EventLoop", dependencies: ["CLibevent", "COpenSSL", "Buffers", "Concurrency"]),
        .target(name: "MemcacheProtocol", dependencies: ["Buffers"]),
        .target(name: "CacheStorage", dependencies: ["Concurrency"]),
        .target(name: "CacheNode", dependencies: ["Concurrency", "EventLoop", "MemcacheProtocol", "CacheStorage"]),
        .executableTarget(name: "memcluster-node", dependencies: ["CacheNode"]),
        .target(name: "CacheProxy", dependencies: [
            "COpenSSLCrypto", "Concurrency", "EventLoop", "MemcacheProtocol",
            .product(name: "Yams", package: "Yams"),
            .product(name: "Logging", package: "swift-log"),
            // ProxyCommand (the command line) lives here so tests can parse flags.
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "memcluster-proxy", dependencies: ["CacheProxy"]),
        .executableTarget(name: "memcluster-admin", dependencies: [
            "CacheProxy", "MemcacheProtocol",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .target(name: "LoadGenerator", dependencies: [
            "Concurrency", "EventLoop", "MemcacheProtocol",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Histogram", package: "hdrhistogram-swift"),
        ]),
        .executableTarget(name: "memcluster-bench", dependencies: ["LoadGenerator"]),

        .testTarget(name: "BuffersTests", dependencies: ["Buffers"]),
        .testTarget(name: "EventLoopTests", dependencies: ["EventLoop"]),
        .testTarget(name: "MemcacheProtocolTests", dependencies: ["MemcacheProtocol"]),
        .testTarget(name: "CacheStorageTests", dependencies: ["CacheStorage"]),
        // Fixtures/ is read from the source tree (see CorpusReplayTests.swift), not bundled.
        .testTarget(name: "CacheNodeTests", dependencies: ["CacheNode", "CacheStorage", "EventLoop"], exclude: ["Fixtures"]),
        // Fixtures/ is read from the source tree (see RingFixture.swift), not bundled.
        .testTarget(name: "CacheProxyTests", dependencies: ["CacheProxy"], exclude: ["Fixtures"]),
        .testTarget(name: "LoadGeneratorTests", dependencies: ["LoadGenerator", "EventLoop"]),
    ]
)
