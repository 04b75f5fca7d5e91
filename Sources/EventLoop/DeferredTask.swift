import CLibevent

/// Work that runs once after every event that is ready in the current loop
/// iteration has been handled, however many times it was scheduled meanwhile.
///
/// A proxy worker uses it to flush: twenty clients' requests read in one
/// iteration leave for a node in one write instead of twenty. libevent runs
/// active events lowest priority number first, and this event has the lowest
/// priority, so it waits for the iteration's I/O callbacks. Loop thread only.
public final class DeferredTask {
    private var event: OpaquePointer?
    private let action: () -> Void
    private var scheduled = false

    public init(loop: EventLoop, action: @escaping () -> Void) {
        self.action = action
        // The task outlives its event (freed in deinit), so the context is unretained.
        event = event_new(loop.base, -1, 0, deferredTaskCallback, Unmanaged.passUnretained(self).toOpaque())
        event_priority_set(event, EventLoop.deferredPriority)
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
