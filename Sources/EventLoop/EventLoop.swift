import Concurrency
import CLibevent
import Glibc
import Synchronization

// EventLoop: the project's only window onto libevent.
//
//   accepting thread                       worker thread (one per -t)
//   ----------------                       --------------------------
//   Listener --accept--> fd --execute{}--> EventLoop (event_base)
//                                            |- Connection: read event -> handler -> output -> write
//                                            |- EventTimer: periodic or one-shot callbacks
//                                            '- wake-up eventfd: runs tasks queued by other threads
//
// Each event_base is touched by one thread only, so libevent runs without locks.
// The only cross-thread entry is `execute`, which queues a task and wakes the loop.

/// One libevent `event_base`, owned and run by exactly one thread.
///
/// `execute` and `stop` may be called from any thread; everything else, and
/// every callback, runs on the loop's own thread.
public final class EventLoop: @unchecked Sendable {
    /// The libevent base; only the EventLoop module uses it.
    let base: OpaquePointer
    private let wakeFD: Int32
    private var wakeEvent: OpaquePointer?
    private let queue = Locked<[@Sendable () -> Void]>([])
    private let stopRequested = Atomic<Bool>(false)
    private let stopped = Atomic<Bool>(false)

    /// The libevent version in use, for `stats`.
    public static var libeventVersion: String { String(cString: event_get_version()) }

    /// `preciseTimers`: timers fire within microseconds of their deadline (libevent's
    /// epoll backend otherwise rounds timeouts up to whole milliseconds and reads a
    /// coarse clock). Costs a timerfd_settime per loop iteration; for schedulers
    /// such as the load generator's open loop, not for servers.
    public init(preciseTimers: Bool = false) throws(SystemCallError) {
        guard let config = event_config_new() else { throw SystemCallError("event_config_new", errno: ENOMEM) }
        defer { event_config_free(config) }
        // Safe because this base is only ever used by the thread that runs it.
        event_config_set_flag(config, Int32(EVENT_BASE_FLAG_NOLOCK.rawValue))
        if preciseTimers { event_config_set_flag(config, Int32(EVENT_BASE_FLAG_PRECISE_TIMER.rawValue)) }
        guard let base = event_base_new_with_config(config) else { throw SystemCallError("event_base_new", errno: ENOMEM) }
        self.base = base
        let fd = eventfd(0, Int32(EFD_NONBLOCK) | Int32(EFD_CLOEXEC))
        guard fd >= 0 else {
            let error = errno
            event_base_free(base)
            throw SystemCallError("eventfd", errno: error)
        }
        wakeFD = fd
        // The loop outlives its wake-up event, so the context need not be retained.
        wakeEvent = event_new(base, fd, Int16(EV_READ | EV_PERSIST), eventLoopWakeCallback,
                              Unmanaged.passUnretained(self).toOpaque())
        event_add(wakeEvent, nil)
    }

    deinit {
        if let wakeEvent { event_free(wakeEvent) }
        close(wakeFD)
        event_base_free(base)
    }

    /// Runs `task` on the loop thread soon. Callable from any thread.
    public func execute(_ task: @escaping @Sendable () -> Void) {
        let wasEmpty = queue.withLock { tasks in
            tasks.append(task)
            return tasks.count == 1
        }
        // One wake-up covers every task queued before the loop drains the queue.
        if wasEmpty { wake() }
    }

    /// Runs the loop on the calling thread until `stop()`.
    public func run() {
        while !stopRequested.load(ordering: .acquiring) {
            event_base_loop(base, 0)
        }
        runQueuedTasks()
        stopped.store(true, ordering: .releasing)
    }

    /// Asks the loop to return from `run()`. Callable from any thread.
    public func stop() {
        stopRequested.store(true, ordering: .releasing)
        execute { [self] in event_base_loopbreak(self.base) }
    }

    /// Waits (from another thread) until `run()` has returned after `stop()`, so
    /// work the loop was doing — a reply being written — is finished. Gives up
    /// after `timeoutMilliseconds`.
    public func waitUntilStopped(timeoutMilliseconds: Int = 2000) {
        var waited = 0
        while !stopped.load(ordering: .acquiring) && waited < timeoutMilliseconds {
            usleep(1000)
            waited += 1
        }
    }

    private func wake() {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { Glibc.write(wakeFD, $0.baseAddress, 8) }
    }

    fileprivate func drainWakeups() {
        var counter: UInt64 = 0
        _ = withUnsafeMutableBytes(of: &counter) { Glibc.read(wakeFD, $0.baseAddress, 8) }
        runQueuedTasks()
    }

    private func runQueuedTasks() {
        let tasks = queue.withLock { tasks in
            let taken = tasks
            tasks.removeAll(keepingCapacity: true)
            return taken
        }
        for task in tasks { task() }
    }
}

private func eventLoopWakeCallback(_ fd: Int32, _ what: Int16, _ context: UnsafeMutableRawPointer?) {
    Unmanaged<EventLoop>.fromOpaque(context!).takeUnretainedValue().drainWakeups()
}
