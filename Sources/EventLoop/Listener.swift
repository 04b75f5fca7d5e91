import CLibevent
import Glibc

/// Accepts connections on a listening socket and passes each new fd on.
/// Runs on one loop (the accepting thread); `onAccept` decides which worker gets it.
public final class Listener {
    public let fd: Int32
    private var event: OpaquePointer?
    private let onAccept: (Int32) -> Void

    public init(fd: Int32, loop: EventLoop, onAccept: @escaping (Int32) -> Void) {
        self.fd = fd
        self.onAccept = onAccept
        event = event_new(loop.base, fd, Int16(EV_READ | EV_PERSIST), listenerCallback,
                          Unmanaged.passUnretained(self).toOpaque())
        event_add(event, nil)
    }

    deinit {
        if let event { event_free(event) }
        close(fd)
    }

    /// Stops accepting (e.g. when out of file descriptors) until `resume()`.
    public func pause() { event_del(event) }
    public func resume() { event_add(event, nil) }

    fileprivate func acceptPending() {
        // Bounded so one busy listener cannot starve the loop's other events.
        for _ in 0..<64 {
            do {
                guard let client = try Socket.accept(from: fd) else { return }
                onAccept(client)
            } catch {
                // EMFILE/ENFILE: back off; the caller's accounting resumes us.
                if error.errno == EMFILE || error.errno == ENFILE { return }
                return
            }
        }
    }
}

private func listenerCallback(_ fd: Int32, _ what: Int16, _ context: UnsafeMutableRawPointer?) {
    Unmanaged<Listener>.fromOpaque(context!).takeUnretainedValue().acceptPending()
}
