import CacheStorage
import EventLoop
import MemcacheProtocol

/// One worker thread: its event loop, the connections it owns, its parser,
/// processor and counters. Everything here runs on the worker's loop thread,
/// except `adopt`, which any thread may call.
final class NodeWorker: @unchecked Sendable {
    let loop: EventLoop
    let context: NodeContext
    let counters: WorkerCounters
    let parser: RequestParser
    let processor: RequestProcessor
    /// Live client sessions, so idle ones can be found and each is retained while open.
    private var clients: [ObjectIdentifier: (ClientSession, Connection)] = [:]
    private var idleSweep: EventTimer?

    init(loop: EventLoop, context: NodeContext, counters: WorkerCounters) {
        self.loop = loop
        self.context = context
        self.counters = counters
        let settings = context.settings
        self.parser = RequestParser(limits: RequestLimits(maxKeyLength: 250, itemSizeMax: settings.itemSizeMax,
                                                          casEnabled: settings.casEnabled,
                                                          maxLineLength: settings.requestLineMax))
        self.processor = RequestProcessor(context: context, counters: counters)
    }

    /// Hands an accepted socket to this worker. Any thread.
    func adopt(_ fd: Int32, tls: TLSServerContext? = nil) {
        loop.execute { [self] in
            attachClient { client in Connection(fd: fd, loop: loop, handler: client, tls: tls) }
        }
    }

    /// Starts serving a client on the connection `connect` makes for it (a
    /// socket's, or a test's embedded one). Loop thread.
    @discardableResult
    func attachClient(_ connect: (ClientSession) -> Connection) -> ClientSession {
        let client = ClientSession(worker: self)
        let connection = connect(client)
        clients[ObjectIdentifier(client)] = (client, connection)
        startIdleSweepIfNeeded()
        return client
    }

    /// The node is shutting down: every connection answers what it read, then ends.
    func drainAll() {
        for (client, connection) in clients.values { client.drain(connection) }
    }

    /// The node is exiting: closes every client connection. Loop thread.
    func closeAll() {
        for (_, connection) in Array(clients.values) { connection.close() }
        idleSweep?.stop()
    }

    func connectionClosed(_ client: ClientSession) {
        clients[ObjectIdentifier(client)] = nil
        context.currentConnections.wrappingSubtract(1, ordering: .relaxed)
    }

    /// `-o idle_timeout`: close connections that sent nothing for that long.
    private func startIdleSweepIfNeeded() {
        let timeout = context.settings.idleTimeoutSeconds
        guard timeout > 0, idleSweep == nil else { return }
        let timer = EventTimer(loop: loop, milliseconds: 1000, repeating: true) { [unowned self] in
            let now = context.clock.now
            for (client, connection) in clients.values where Int(now &- client.lastActive) > timeout {
                counters.add(.idleKicks)
                connection.close()
            }
        }
        timer.start()
        idleSweep = timer
    }
}
