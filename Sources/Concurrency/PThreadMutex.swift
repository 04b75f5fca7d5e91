#if canImport(Glibc)
import Glibc
#endif

/// A pthread mutex in memory that never moves.
///
/// Every lock in the project is one of these (directly, or inside `Locked`):
/// ThreadSanitizer follows pthread locks, but not the futex inside
/// `Synchronization.Mutex`, whose use it reports as data races.
///
/// Chosen over `Synchronization.Mutex` by measurement on this 2-core box
/// (lock+unlock of one of 8 locks picked at random, release build): glibc's
/// adaptive mutex (spins briefly before sleeping) cost ~10-14 ns with 2-4
/// threads against ~17-26 ns for `Mutex`, whose uncontended path is cheaper
/// (5 vs 8-12 ns with a single thread) but whose contended path goes to the
/// kernel sooner. It also gives a plain `tryLock`, which the store needs to
/// take a segment from another shard without any lock-order problem.
public struct PThreadMutex: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    public init() {
        // A cache line (two, for the adjacent-line prefetcher) of its own: mutexes of
        // different shards packed together by malloc made threads on different
        // shards bounce one line between cores.
        // Safe because pthread_mutex_init below initializes it; destroy() frees it once.
        mutex = UnsafeMutableRawPointer.allocate(byteCount: CacheLine.padding, alignment: CacheLine.padding)
            .bindMemory(to: pthread_mutex_t.self, capacity: 1)
        var attributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&attributes)
        pthread_mutexattr_settype(&attributes, Int32(PTHREAD_MUTEX_ADAPTIVE_NP))
        // Safe because `mutex` was just allocated and is initialized exactly once here.
        let status = pthread_mutex_init(mutex, &attributes)
        pthread_mutexattr_destroy(&attributes)
        precondition(status == 0, "pthread_mutex_init failed: \(status)")
    }

    @inline(__always)
    public func lock() {
        let status = pthread_mutex_lock(mutex)
        assert(status == 0)
    }

    @inline(__always)
    public func unlock() {
        let status = pthread_mutex_unlock(mutex)
        assert(status == 0)
    }

    /// Takes the lock only if nobody holds it.
    @inline(__always)
    public func tryLock() -> Bool {
        pthread_mutex_trylock(mutex) == 0
    }

    /// Frees the mutex; nobody may hold or use it any more.
    public func destroy() {
        pthread_mutex_destroy(mutex)
        UnsafeMutableRawPointer(mutex).deallocate()
    }
}

/// Spacing that keeps data written by different threads off each other's cache lines.
public enum CacheLine {
    public static let padding = 128
}
