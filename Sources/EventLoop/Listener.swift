import CLibevent
import Glibc

/// Accepts connections on a listening socket and passes each new fd on.
/// Runs on one loop (the accepting thread); `onAccept` decides which worker gets it.
///
/// Out of file descriptors (EMFILE, ENFILE), the pending connection cannot be
/// accepted and the socket stays readable: accepting again at once would spin
/// the thread at 100%. So, as memcached does, the listener stops accepting
/// and tries again `retryMilliseconds` later; clients wait in the backlog.
public final class Listener {
    public let fd: Int32
    private var event: OpaquePointer?
    private let onAccept: (Int32) -> Void
    private var retryTimer: EventTimer?
    private var pausedSince: Int64 = 0
    /// Told when accepting stops for lack of descriptors, and when it starts
    /// again with how long it stopped, in microseconds (memcached's
    /// `listen_disabled_num` and `time_in_listen_disabled_us`).
    private let onPause: (() -> Void)?
    private let onResume: ((Int64) -> Void)?

    public static let retryMilliseconds = 100

    public init(fd: Int32, loop: EventLoop, onPause: (() -> Void)? = nil, onResume: ((Int64) -> Void)? = nil,
                onAccept: @escaping (Int32) -> Void) {
        self.fd = fd
        self.onAccept = onAccept
        self.onPause = onPause
        self.onResume = onResume
        event = event_new(loop.base, fd, Int16(EV_READ | EV_PERSIST), listenerCallback,
                          Unmanaged.passUnretained(self).toOpaque())
        event_add(event, nil)
        retryTimer = EventTimer(loop: loop, milliseconds: Listener.retryMilliseconds, repeating: false) { [unowned self] in
            onResume?((monotonicMilliseconds() - pausedSince) * 1000)
            event_add(event, nil)
        }
    }

    deinit {
        retryTimer?.stop()
        if let event { event_free(event) }
        close(fd)
    }

    /// Stops accepting until `resume()`.
    public func pause() { event_del(event) }
    public func resume() { event_add(event, nil) }

    fileprivate func acceptPending() {
        // Bounded so one busy listener cannot starve the loop's other events.
        for _ in 0..<64 {
            do {
                guard let client = try Socket.accept(from: fd) else { return }
                onAccept(client)
            } catch {
                if error.errno == EMFILE || error.errno == ENFILE { return pauseForDescriptors() }
                return
            }
        }
    }

    private func pauseForDescriptors() {
        onPause?()
        pausedSince = monotonicMilliseconds()
        event_del(event)
        retryTimer?.start()
    }
}

private func listenerCallback(_ fd: Int32, _ what: Int16, _ context: UnsafeMutableRawPointer?) {
    Unmanaged<Listener>.fromOpaque(context!).takeUnretainedValue().acceptPending()
}
