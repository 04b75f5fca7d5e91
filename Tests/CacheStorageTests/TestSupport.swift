import CacheStorage
#if canImport(Glibc)
import Glibc
#endif

/// What a test reads back from the store.
struct Fetched: Equatable {
    var value: [UInt8]
    var flags: UInt32
    var cas: UInt64
    var expiry: ServerTime
}

enum Found: Equatable {
    case hit(Fetched)
    case miss
    case expired
    case flushed
}

/// Small conveniences over the closure API, as the node would use it.
extension ItemStore {
    @discardableResult
    func set(_ key: [UInt8], _ value: [UInt8], flags: UInt32 = 0, expiry: ServerTime = 0, now: ServerTime = 1) -> Result<UInt64, AllocationFailure> {
        key.withUnsafeBytes { keyBytes in
            let hash = ItemStore.hash(keyBytes)
            return withShard(hash: hash) { shard in
                switch shard.allocate(key: keyBytes, valueLength: value.count, clientFlags: flags, expiry: expiry, now: now) {
                case .failure(let failure):
                    return .failure(failure)
                case .success(let item):
                    value.withUnsafeBytes { item.value.copyMemory(from: $0) }
                    return .success(shard.link(item, hash: hash, now: now))
                }
            }
        }
    }

    func get(_ key: [UInt8], now: ServerTime = 1, bump: Bool = true, fetch: Bool = true) -> Found {
        key.withUnsafeBytes { keyBytes in
            let hash = ItemStore.hash(keyBytes)
            return withShard(hash: hash) { shard in
                switch shard.lookup(key: keyBytes, hash: hash, now: now, bump: bump, fetch: fetch) {
                case .hit(let item):
                    return .hit(Fetched(value: Array(item.value), flags: item.clientFlags, cas: item.cas, expiry: item.expiry))
                case .miss: return .miss
                case .expired: return .expired
                case .flushed: return .flushed
                }
            }
        }
    }

    /// Does the store hold exactly `expected` under `key`? Compared in place (fast in debug builds).
    func holds(_ key: [UInt8], _ expected: [UInt8], now: ServerTime = 1, bump: Bool = true) -> Bool {
        matches(key, expected, now: now, bump: bump) == true
    }

    /// nil when the key is absent, else whether its value is exactly `expected` (one atomic look).
    func matches(_ key: [UInt8], _ expected: [UInt8], now: ServerTime = 1, bump: Bool = true) -> Bool? {
        key.withUnsafeBytes { keyBytes in
            let hash = ItemStore.hash(keyBytes)
            return withShard(hash: hash) { shard in
                guard case .hit(let item) = shard.lookup(key: keyBytes, hash: hash, now: now, bump: bump) else { return nil }
                guard item.value.count == expected.count else { return false }
                if expected.isEmpty { return true }
                return expected.withUnsafeBytes { memcmp(item.value.baseAddress!, $0.baseAddress!, expected.count) == 0 }
            }
        }
    }

    func contains(_ key: [UInt8], now: ServerTime = 1) -> Bool {
        key.withUnsafeBytes { keyBytes in
            let hash = ItemStore.hash(keyBytes)
            return withShard(hash: hash) { shard in
                if case .hit = shard.lookup(key: keyBytes, hash: hash, now: now, bump: false, fetch: false) { return true }
                return false
            }
        }
    }

    func value(_ key: [UInt8], now: ServerTime = 1, bump: Bool = true) -> [UInt8]? {
        if case .hit(let fetched) = get(key, now: now, bump: bump) { return fetched.value }
        return nil
    }

    @discardableResult
    func delete(_ key: [UInt8], now: ServerTime = 1) -> Bool {
        key.withUnsafeBytes { keyBytes in
            let hash = ItemStore.hash(keyBytes)
            return withShard(hash: hash) { shard in
                if case .hit(let item) = shard.lookup(key: keyBytes, hash: hash, now: now, bump: false, fetch: false) {
                    shard.unlink(item, hash: hash)
                    return true
                }
                return false
            }
        }
    }

    /// memcached's append: a new item holding old value + suffix, built while the old one is preserved.
    @discardableResult
    func append(_ key: [UInt8], _ suffix: [UInt8], now: ServerTime = 1) -> Result<UInt64, AllocationFailure>? {
        key.withUnsafeBytes { keyBytes in
            let hash = ItemStore.hash(keyBytes)
            return withShard(hash: hash) { shard in
                guard case .hit(let old) = shard.lookup(key: keyBytes, hash: hash, now: now, bump: false, fetch: false) else { return nil }
                let oldCount = old.value.count
                switch shard.allocate(key: keyBytes, valueLength: oldCount + suffix.count, clientFlags: old.clientFlags,
                                      expiry: old.expiry, now: now, preserving: old) {
                case .failure(let failure):
                    return .failure(failure)
                case .success(let item):
                    item.value.copyMemory(from: UnsafeRawBufferPointer(old.value))
                    suffix.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: item.value[oldCount...]).copyMemory(from: $0) }
                    return .success(shard.link(item, hash: hash, now: now))
                }
            }
        }
    }
}

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

/// A value whose bytes depend on key and version, so that a read-back can be checked without keeping it.
/// Written 8 bytes at a time: debug builds are slow at byte loops.
func patternValue(key: Int, version: Int, count: Int) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        let raw = UnsafeMutableRawBufferPointer(buffer)
        var state = UInt64(truncatingIfNeeded: key) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(truncatingIfNeeded: version) &* 0xC2B2_AE3D_27D4_EB4F
        var offset = 0
        while offset < count {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            if offset + 8 <= count {
                raw.storeBytes(of: state ^ (state >> 29), toByteOffset: offset, as: UInt64.self)
                offset += 8
            } else {
                raw[offset] = UInt8(truncatingIfNeeded: state >> 40)
                offset += 1
            }
        }
        initialized = count
    }
}

/// A seeded generator (SplitMix64), so floods are reproducible.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Runs `body(index)` on `count` plain pthreads and waits for all of them.
func runThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    final class Job {
        let body: @Sendable (Int) -> Void
        let index: Int
        init(body: @escaping @Sendable (Int) -> Void, index: Int) {
            self.body = body
            self.index = index
        }
    }
    var threads: [pthread_t] = []
    for index in 0..<count {
        var thread = pthread_t()
        let job = Unmanaged.passRetained(Job(body: body, index: index)).toOpaque()
        let status = pthread_create(&thread, nil, { raw in
            let job = Unmanaged<Job>.fromOpaque(raw!).takeRetainedValue()
            job.body(job.index)
            return nil
        }, job)
        precondition(status == 0)
        threads.append(thread)
    }
    for thread in threads { pthread_join(thread, nil) }
}

extension StorageConfiguration {
    static func small(_ megabytes: Int, shards: Int = 8, itemSizeMax: Int = 1 << 20, evictions: Bool = true, cas: Bool = true) -> StorageConfiguration {
        StorageConfiguration(memoryLimit: megabytes << 20, itemSizeMax: itemSizeMax, evictionsEnabled: evictions, casEnabled: cas, shardCount: shards)
    }
}
