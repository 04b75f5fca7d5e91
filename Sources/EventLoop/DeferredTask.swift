import CLibevent

/// Work that runs once after every event that is ready in the current loop
/// iteration has been handled, however many times it was scheduled meanwhile.
///
/// A proxy worker uses it to flush: twenty clients' requests read in one
/// iteration leave for a node in one write instead of twenty. libevent queues
/// every event that epoll reported ready before it runs any callback; this
/// event, activated from inside a callback, joins the end of that queue, so it
/// runs after the iteration's I/O callbacks and before the next epoll_wait.
/// (At a lower priority it would wait for a whole extra iteration: libevent
/// runs one priority level per iteration.) Loop thread only.
public final class DeferredTask {
    private var event: OpaquePointer?
    private let action: () -> Void
    private var scheduled = false

    public init(loop: EventLoop, action: @escaping () -> Void) {
        self.action = action
        // The task outlives its event (freed in deinit), so the context is unretained.
        event = event_new(loop.base, -1, 0, deferredTaskCallback, Unmanaged.passUnretained(self).toOpaque())
    }

    deinit { if let event { event_free(event) } }

    /// Runs the action at the end of this loop iteration (once, however often called).
    @inline(__always) public func schedule() {
        guard !scheduled else { return }
        scheduled = true
        event_active(event, 0, 0)
    }

    fileprivate func run() {
        scheduled = false
        action()
    }
}

private func deferredTaskCallback(_ fd: Int32, _ what: Int16, _ context: UnsafeMutableRawPointer?) {
    Unmanaged<DeferredTask>.fromOpaque(context!).takeUnretainedValue().run()
}
