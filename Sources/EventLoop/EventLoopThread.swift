import CLibevent
import Glibc

/// Starts threads that each own and run one `EventLoop`.
public enum EventLoopThread {
    /// Creates a loop, starts a thread running it, and returns the loop.
    public static func start(name: String) throws -> EventLoop {
        let loop = try EventLoop()
        let context = Unmanaged.passRetained(ThreadContext(loop: loop, name: name)).toOpaque()
        var thread = pthread_t()
        let status = pthread_create(&thread, nil, eventLoopThreadMain, context)
        guard status == 0 else {
            Unmanaged<ThreadContext>.fromOpaque(context).release()
            throw SystemCallError("pthread_create", errno: status)
        }
        pthread_detach(thread)
        return loop
    }
}

private final class ThreadContext {
    let loop: EventLoop
    let name: String
    init(loop: EventLoop, name: String) {
        self.loop = loop
        self.name = name
    }
}

// Kept out of any main.swift: a closure there would be main-actor isolated and
// trap when a C thread calls it.
private func eventLoopThreadMain(_ context: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let threadContext = Unmanaged<ThreadContext>.fromOpaque(context!).takeRetainedValue()
    memcluster_set_thread_name(String(threadContext.name.prefix(15)))
    threadContext.loop.run()
    return nil
}
