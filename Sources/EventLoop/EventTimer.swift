import CLibevent
import Glibc

/// A one-shot or repeating timer on an `EventLoop`. Loop thread only.
public final class EventTimer {
    private var event: OpaquePointer?
    private let action: () -> Void
    private var interval: timeval
    private let repeating: Bool

    /// Creates a stopped timer; `start()` arms it.
    public init(loop: EventLoop, milliseconds: Int, repeating: Bool, action: @escaping () -> Void) {
        self.action = action
        self.repeating = repeating
        self.interval = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
        let flags = Int16(repeating ? EV_PERSIST : 0)
        // The timer outlives its event (freed in deinit), so the context is unretained.
        event = event_new(loop.base, -1, flags, eventTimerCallback, Unmanaged.passUnretained(self).toOpaque())
    }

    deinit { if let event { event_free(event) } }

    /// Arms the timer (again); a pending one-shot is pushed back by a full interval.
    public func start() { event_add(event, &interval) }

    /// Arms the timer to fire after `microseconds`, whatever its interval (for
    /// deadlines finer than a millisecond; see `EventLoop(preciseTimers:)`).
    public func start(afterMicroseconds microseconds: Int) {
        var delay = timeval(tv_sec: microseconds / 1_000_000, tv_usec: microseconds % 1_000_000)
        event_add(event, &delay)
    }

    public func stop() { event_del(event) }

    public func setInterval(milliseconds: Int) {
        interval = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
    }

    public var isPending: Bool { event_pending(event, Int16(EV_TIMEOUT), nil) != 0 }

    fileprivate func fire() { action() }
}

private func eventTimerCallback(_ fd: Int32, _ what: Int16, _ context: UnsafeMutableRawPointer?) {
    Unmanaged<EventTimer>.fromOpaque(context!).takeUnretainedValue().fire()
}
