import EventLoop
import Glibc

/// Joinable threads, each running one worker's loop (EventLoopThread's are detached).
enum WorkerThread {
    static func start(_ worker: BenchWorker) throws -> pthread_t {
        let context = Unmanaged.passRetained(worker).toOpaque()
        var thread = pthread_t()
        let status = pthread_create(&thread, nil, workerThreadMain, context)
        guard status == 0 else {
            Unmanaged<BenchWorker>.fromOpaque(context).release()
            throw SystemCallError("pthread_create", errno: status)
        }
        return thread
    }
}

private func workerThreadMain(_ context: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let worker = Unmanaged<BenchWorker>.fromOpaque(context!).takeRetainedValue()
    worker.loop.run()
    return nil
}
