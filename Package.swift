// swift-tools-version:6.0
import PackageDescription

// Dependencies point one way:
//   Buffers <- EventLoop, MemcacheProtocol (byte buffers, no I/O)
//   EventLoop, MemcacheProtocol <- CacheNode; CacheStorage <- CacheNode only.
// The proxy and the load generator will sit beside CacheNode on the same two foundations.
let package = Package(
    name: "memcluster",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "memcluster-node", targets: ["memcluster-node"]),
    ],
    dependencies: [],
    targets: [
        .systemLibrary(
            name: "CLibevent",
            pkgConfig: "libevent_pthreads",
            providers: [.apt(["libevent-dev"])]
        ),
        .target(name: "Buffers"),
        .target(name: "EventLoop", dependencies: ["CLibevent", "Buffers"]),
        .target(name: "MemcacheProtocol", dependencies: ["Buffers"]),
        .target(name: "CacheStorage"),
        .target(name: "CacheNode", dependencies: ["EventLoop", "MemcacheProtocol", "CacheStorage"]),
        .executableTarget(name: "memcluster-node", dependencies: ["CacheNode"]),

        .testTarget(name: "BuffersTests", dependencies: ["Buffers"]),
        .testTarget(name: "EventLoopTests", dependencies: ["EventLoop"]),
        .testTarget(name: "MemcacheProtocolTests", dependencies: ["MemcacheProtocol"]),
        .testTarget(name: "CacheStorageTests", dependencies: ["CacheStorage"]),
        .testTarget(name: "CacheNodeTests", dependencies: ["CacheNode"]),
    ]
)
