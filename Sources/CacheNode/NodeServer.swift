import CacheStorage
import EventLoop
import Glibc

/// A reason the node cannot run, for the operator.
public struct StartupError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The running node: listening sockets and the clock on the main thread's loop,
/// client connections spread over `-t` worker loops.
///
///   main thread: Listener(s) --accept--> round robin --> NodeWorker 1..t (own thread each)
///                EventTimer: clock tick + expired-item reclaim, every second
///                SignalWatcher: SIGINT/SIGTERM stop the node, SIGHUP reads the -Y file again
public final class NodeServer {
    public let context: NodeContext
    private let mainLoop: EventLoop
    private var workers: [NodeWorker] = []
    private var listeners: [Listener] = []
    private var timers: [EventTimer] = []
    private var signalWatchers: [SignalWatcher] = []
    private var nextWorker = 0
    private var shuttingDown = false
    /// Ports the listeners are bound to (the first matters when `-p 0`).
    public private(set) var boundPort: UInt16 = 0

    /// Expired items reclaimed per second in the background.
    static let reclaimBatch = 20_000

    public init(settings: NodeSettings) throws {
        let configuration = StorageConfiguration(memoryLimit: settings.memoryLimit, itemSizeMax: settings.itemSizeMax,
                                                 evictionsEnabled: !settings.evictionsDisabled,
                                                 casEnabled: settings.casEnabled)
        let storage = try ItemStore(configuration: configuration)
        var tls: TLSServerContext?
        if settings.tlsEnabled {
            do { tls = try TLSServerContext(settings: settings.tls) } catch { throw StartupError(error.description) }
        }
        var authentication: AsciiAuthentication?
        if let file = settings.authFile {
            do { authentication = try AsciiAuthentication(file: file) } catch { throw StartupError(error.description) }
        }
        context = NodeContext(settings: settings, storage: storage, clock: ServerClock(), tls: tls,
                              authentication: authentication)
        mainLoop = try EventLoop()
    }

    /// Binds the listening sockets. Separate from `run` so start-up errors are
    /// reported before the process detaches or drops privileges.
    public func bind() throws {
        let settings = context.settings
        var port = settings.port
        for (host, ownPort, speaksTLS) in settings.listeners {
            let address = try SocketAddress(host: host, port: ownPort ?? port)
            let fd = try Socket.listen(on: address, backlog: settings.listenBacklog)
            try? Socket.setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
            // With -p 0 every address shares the port the first one was given.
            if port == 0, ownPort == nil, let chosen = Socket.localPort(fd) { port = chosen }
            let context = self.context
            listeners.append(Listener(fd: fd, loop: mainLoop,
                                      onPause: { context.listenDisabled.wrappingAdd(1, ordering: .relaxed) },
                                      onResume: { context.listenDisabledMicroseconds.wrappingAdd(Int($0), ordering: .relaxed) },
                                      onAccept: { [unowned self] client in accept(client, tls: speaksTLS) }))
        }
        boundPort = port
        context.boundPort.store(Int(port), ordering: .relaxed)
    }

    /// Starts the workers and runs the main loop until a signal or `shutdown`.
    public func run() throws {
        SignalWatcher.ignoreBrokenPipes()
        for (index, counters) in context.workerCounters.enumerated() {
            let loop = try EventLoopThread.start(name: "mc-worker-\(index)")
            workers.append(NodeWorker(loop: loop, context: context, counters: counters))
        }
        let clock = context.clock
        let storage = context.storage
        let context = self.context
        let tick = EventTimer(loop: mainLoop, milliseconds: 1000, repeating: true) {
            clock.tick()
            _ = storage.reclaimExpired(now: clock.now, limit: NodeServer.reclaimBatch)
            context.maintenancePasses.wrappingAdd(1, ordering: .relaxed)
        }
        tick.start()
        timers.append(tick)
        for signalNumber in [SIGINT, SIGTERM] {
            signalWatchers.append(SignalWatcher(loop: mainLoop, signal: signalNumber) { [unowned self] in shutDownGracefully() })
        }
        // As memcached: SIGHUP does not stop the node; it reads the -Y file
        // again, keeping the entries it has if the file cannot be read.
        let authentication = context.authentication
        signalWatchers.append(SignalWatcher(loop: mainLoop, signal: SIGHUP) { authentication?.reload() })
        let loop = mainLoop
        context.onShutdown { loop.execute { loop.stop() } }
        // No client is accepted before the main loop runs: every descriptor open now is the node's own.
        let reserved = NodeServer.openDescriptors()
        context.reservedDescriptors.store(reserved, ordering: .relaxed)
        // -c clients, one more to accept and refuse the next, the node's own
        // descriptors and standard streams, and a little room (a pid file, /proc).
        if let problem = DescriptorLimit.ensure(context.settings.maxConnections + 1 + reserved + 3 + 16) {
            throw StartupError("-c \(context.settings.maxConnections) \(problem)")
        }
        mainLoop.run()
        for worker in workers {
            worker.loop.execute { worker.closeAll() }
            worker.loop.stop()
        }
        for worker in workers { worker.loop.waitUntilStopped() }
    }

    /// Stops the main loop; `run` returns. Main loop thread.
    public func stop() {
        mainLoop.stop()
    }

    /// SIGTERM, SIGINT: stop accepting, let every connection answer what it has
    /// read and end cleanly, and stop once all have closed or the grace period
    /// (`-o shutdown_grace_ms`) is over. A second signal stops at once.
    /// Main loop thread.
    func shutDownGracefully() {
        if shuttingDown { return stop() }
        shuttingDown = true
        listeners.removeAll()
        for worker in workers { worker.loop.execute { worker.drainAll() } }
        let deadline = monotonicMilliseconds() + Int64(context.settings.shutdownGraceMilliseconds)
        let context = self.context
        let check = EventTimer(loop: mainLoop, milliseconds: 20, repeating: true) { [unowned self] in
            if context.currentConnections.load(ordering: .relaxed) <= 0 || monotonicMilliseconds() >= deadline { stop() }
        }
        check.start()
        timers.append(check)
    }

    /// Descriptors open in this process, standard input, output and error aside.
    static func openDescriptors() -> Int {
        guard let directory = opendir("/proc/self/fd") else { return 0 }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if let fd = Int32(name), fd > 2 { count += 1 }
        }
        // The directory being read is open too.
        return max(0, count - 1)
    }

    private func accept(_ fd: Int32, tls: Bool) {
        let current = context.currentConnections.load(ordering: .relaxed)
        if current >= context.settings.maxConnections {
            Socket.refuse(fd)
            context.rejectedConnections.wrappingAdd(1, ordering: .relaxed)
            return
        }
        context.currentConnections.wrappingAdd(1, ordering: .relaxed)
        context.totalConnections.wrappingAdd(1, ordering: .relaxed)
        let worker = workers[nextWorker]
        nextWorker = (nextWorker + 1) % workers.count
        worker.adopt(fd, tls: tls ? context.tls : nil)
    }
}
