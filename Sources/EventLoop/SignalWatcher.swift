import CLibevent
import Glibc

/// Runs a callback on a loop's thread when the process receives a signal
/// (libevent turns the signal into an ordinary event, so the callback may do
/// anything). Loop thread only.
public final class SignalWatcher {
    private var event: OpaquePointer?
    private let action: () -> Void

    public init(loop: EventLoop, signal: Int32, action: @escaping () -> Void) {
        self.action = action
        event = event_new(loop.base, signal, Int16(EV_SIGNAL | EV_PERSIST), signalWatcherCallback,
                          Unmanaged.passUnretained(self).toOpaque())
        event_add(event, nil)
    }

    deinit { if let event { event_free(event) } }

    fileprivate func fire() { action() }

    /// Writes to a closed socket must fail with EPIPE rather than kill the process.
    public static func ignoreBrokenPipes() {
        signal(SIGPIPE, SIG_IGN)
    }
}

private func signalWatcherCallback(_ fd: Int32, _ what: Int16, _ context: UnsafeMutableRawPointer?) {
    Unmanaged<SignalWatcher>.fromOpaque(context!).takeUnretainedValue().fire()
}
