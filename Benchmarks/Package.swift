// swift-tools-version:6.1
import PackageDescription

// Micro-benchmarks of Memcluster's hot paths (parsing, encoding, storage, ring),
// a package of its own so that CI's build of the root package never sees it.
// Run: `cd Benchmarks && swift package benchmark` (see README.md, "Micro-benchmarks").
//
// - The root package is named explicitly: `.package(path: "..")` alone would name it
//   after the folder, and CI clones into a folder with another name.
// - ordo-one/benchmark with only the `MallocInterposer` trait: its default traits also
//   enable `RuntimeInterposer`, whose package (swift-runtime-interposer) is not
//   available here. The interposer counts mallocs without jemalloc.
// - Benchmark targets live in Benchmarks/<Name>/ and use the BenchmarkPlugin, as the
//   plugin requires; thresholds live in Thresholds/ (`<target>.<benchmark>.p90.json`).
let package = Package(
    name: "MemclusterBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "memcluster", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        benchmarkTarget("ParserBenchmarks", path: "Parser", products: ["MemcacheProtocol"]),
        benchmarkTarget("ResponseParserBenchmarks", path: "ResponseParser", products: ["MemcacheProtocol"]),
        benchmarkTarget("EncoderBenchmarks", path: "Encoder", products: ["MemcacheProtocol", "Buffers"]),
        benchmarkTarget("StorageBenchmarks", path: "Storage", products: ["CacheStorage"]),
        benchmarkTarget("RingBenchmarks", path: "Ring", products: ["CacheProxy"]),
        // Proves the malloc counter counts (see Control/ControlBenchmarks.swift).
        benchmarkTarget("ControlBenchmarks", path: "Control", products: []),
        // Workload helpers (keys, streams, access order) shared by the benchmarks.
        .target(name: "BenchmarkSupport", dependencies: [.product(name: "Benchmark", package: "benchmark")], path: "Support"),
    ]
)

/// One benchmark executable over products of the root package.
func benchmarkTarget(_ name: String, path: String, products: [String]) -> Target {
    .executableTarget(
        name: name,
        dependencies: [.product(name: "Benchmark", package: "benchmark")]
            + products.map { .product(name: $0, package: "memcluster") } + ["BenchmarkSupport"],
        path: "Benchmarks/\(path)",
        plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
    )
}
