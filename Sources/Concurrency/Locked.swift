/// A value shared between threads, reached only under its lock:
/// `locked.withLock { $0.append(x) }`. A pthread mutex underneath (see
/// `PThreadMutex`), so ThreadSanitizer sees the synchronisation.
public final class Locked<Value>: @unchecked Sendable {
    private var value: Value
    private let mutex = PThreadMutex()

    public init(_ value: Value) {
        self.value = value
    }

    deinit { mutex.destroy() }

    /// Runs `body` with the value while holding the lock. Any thread.
    @inline(__always)
    public func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        mutex.lock()
        defer { mutex.unlock() }
        return try body(&value)
    }
}
