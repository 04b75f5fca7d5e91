import Buffers
import CacheStorage
import EventLoop
import MemcacheProtocol

/// One client's session: frames requests from the connection's input, has the
/// worker's processor answer them in order, and keeps the stream in sync across
/// swallowed data blocks. Loop thread only.
final class ClientSession: ConnectionHandler {
    // unowned(unsafe): the worker outlives every connection it owns, and a
    // checked unowned reference costs a retain and release per use.
    private unowned(unsafe) let worker: NodeWorker
    /// Framing state across reads (a refused data block being dropped).
    private var stream: RequestStream
    /// Set once the connection is closing; later input is ignored.
    private var finished = false
    /// Nothing has been read yet: the first byte tells the protocol.
    private var atStart = true
    /// Server time of the last request, for `-o idle_timeout`.
    private(set) var lastActive: ServerTime
    /// The node is shutting down: nothing more is read (see `drain`).
    private var draining = false
    /// A multi-key get or a metadump at the front of the input stopped at its
    /// output limit: where it goes on (see `RequestProcessor.execute`).
    private var resume = Resumption.none
    /// Replies to earlier requests that memcached would still hold back: it
    /// writes them when the input runs dry, after a classic get and after
    /// `mn`, and refuses a metadump while any are held (its dump bypasses
    /// them). Tracked so the node refuses the same metadumps; memcached's
    /// flush every `-R` requests is not followed.
    private var repliesHeld = false
    /// `-Y`: the connection showed its credentials (always true without `-Y`).
    private var authenticated: Bool
    /// `-Y`: reads the connection until it has logged in.
    private var login = AsciiLogin()

    /// Stop answering and wait for the socket to drain past this much pending output,
    /// so a client that pipelines without reading cannot grow our memory without bound.
    static let outputHighWater = 1 << 20

    init(worker: NodeWorker) {
        self.worker = worker
        self.lastActive = worker.context.clock.now
        self.authenticated = worker.context.authentication == nil
        self.stream = RequestStream(parser: worker.parser)
    }

    func connectionReadable(_ connection: Connection) {
        worker.counters.add(.bytesRead, UInt64(connection.lastReadCount))
        lastActive = worker.context.clock.now
        processInput(connection)
    }

    func connectionDrained(_ connection: Connection) {
        guard !finished, connection.isReadingPaused else { return }
        processInput(connection)
        // The last part of a suspended get or metadump, and the replies after
        // it, would otherwise wait for the client's next bytes: only a read
        // flushes on its own.
        if !connection.isClosed && !connection.isWaitingForWritable { connection.flush() }
        if draining { return finishDrainIfDone(connection) }
        if !connection.isClosed && !isBackedUp(connection) && resume == .none { connection.resumeReading() }
        finishIfInputEnded(connection)
    }

    /// The client half-closed: answer what it sent (as memcached does), then close.
    func connectionInputEnded(_ connection: Connection) {
        finishIfInputEnded(connection)
    }

    private func finishIfInputEnded(_ connection: Connection) {
        // Still backed up: the rest is answered as the output drains.
        guard connection.inputEnded, !finished, !isBackedUp(connection), resume == .none else { return }
        finish(connection)
    }

    func connectionClosed(_ connection: Connection) {
        worker.connectionClosed(self)
    }

    private func isBackedUp(_ connection: Connection) -> Bool {
        connection.output.readableCount >= ClientSession.outputHighWater
    }

    /// Answers every complete request in the input buffer (or until output backs up).
    private func processInput(_ connection: Connection) {
        if finished { return }
        if atStart, let first = connection.input.readableBytes.first {
            atStart = false
            // memcached -B auto would switch to the binary protocol, which the node
            // does not speak: close rather than answer it with text.
            // (With -Y memcached reads every byte as text until the login.)
            if first == 0x80 && authenticated { return finish(connection) }
            // Answered as text, as memcached does, but said: a client set up for TLS.
            if connection.plainTextPeerSentTLSHandshake {
                worker.context.plainTextTLSClients.log(
                    "a TLS handshake on a plain-text port (no -Z, or notls:): answered as text")
            }
        }
        let writtenBefore = connection.output.readableCount
        let input = connection.input.readableBytes
        // Reused for every request of this read: the parser writes into it
        // instead of returning a fresh ~250-byte value each time.
        var request = Request(command: .get)
        var consumed = 0
        var needed: Int? = nil
        parsing: while true {
            if !authenticated {
                guard readLogin(connection, input, consumed: &consumed) else { break parsing }
            }
            if isBackedUp(connection) {
                // Resumed from `connectionDrained` once the output is written.
                connection.pauseReading()
                connection.notifyWhenWritable()
                break
            }
            // Safe because `input` stays valid: only `output` changes while parsing.
            switch stream.next(input, consumed: &consumed, into: &request) {
            case .request(let start):
                let bytes = UnsafeRawBufferPointer(rebasing: input[start...])
                let disposition = worker.processor.execute(request, in: bytes, output: &connection.output,
                                                           outputLimit: ClientSession.outputHighWater,
                                                           resume: &resume, repliesHeld: repliesHeld)
                repliesHeld = !ClientSession.writesRepliesOut(request.command)
                switch disposition {
                case .proceed:
                    break
                case .dumped:
                    repliesHeld = false
                case .close:
                    finish(connection)
                    break parsing
                case .suspended:
                    // The request stays in the input, to be executed again from
                    // `resume` once the output has drained.
                    consumed = start
                    connection.pauseReading()
                    connection.notifyWhenWritable()
                    break parsing
                }
            case .needMoreData(let totalLength):
                needed = totalLength
                // The input ran dry: memcached writes what it holds.
                repliesHeld = false
                break parsing
            case .invalid(let error, let quiet):
                repliesHeld = true
                if error == .badDataChunk {
                    worker.processor.refusedStore(request, in: UnsafeRawBufferPointer(rebasing: input[stream.lastStart...]))
                }
                if !quiet { worker.processor.replyError(error, output: &connection.output) }
            case .tooLarge(let start):
                repliesHeld = true
                worker.processor.rejectTooLarge(request, in: UnsafeRawBufferPointer(rebasing: input[start...]),
                                                output: &connection.output)
            case .close:
                finish(connection)
                break parsing
            case .lineTooLong:
                worker.processor.replyError(.lineTooLong, output: &connection.output)
                finish(connection)
                break parsing
            }
        }
        worker.counters.add(.bytesWritten, UInt64(max(0, connection.output.readableCount - writtenBefore)))
        if finished { return }
        connection.input.consume(consumed)
        // A request larger than the buffer (a big value): make room for all of it
        // so it arrives in as few reads as possible.
        if let needed, needed > connection.input.readableCount {
            connection.input.reserveWritable(needed - connection.input.readableCount)
        }
    }

    /// Does memcached write its queued replies right after this command? It
    /// does after the classic gets and `mn` (and after a metadump: `.dumped`).
    private static func writesRepliesOut(_ command: Command) -> Bool {
        switch command {
        case .get, .gets, .gat, .gats, .metaNoop: return true
        default: return false
        }
    }

    /// The node is shutting down: answer what the client had sent by now (as
    /// the output drains, if it is backed up), then end the connection
    /// without losing those replies.
    func drain(_ connection: Connection) {
        guard !finished, !draining else { return }
        draining = true
        connection.stopReadingAfterWhatArrived()
        processInput(connection)
        finishDrainIfDone(connection)
    }

    private func finishDrainIfDone(_ connection: Connection) {
        guard draining, !finished, !isBackedUp(connection), resume == .none else { return }
        finished = true
        connection.closeGracefully()
    }

    /// `-Y`: reads what the connection sent before it logged in
    /// (`AsciiLogin`), from `consumed` on. Before the login memcached keeps
    /// one reply, each taking the place of the one before, and writes it
    /// when the read runs dry or its `-R` turn ends (after `-R` + 1
    /// requests, then every `-R`); the node answers the same. Returns
    /// whether the connection is now logged in, the rest of the input to be
    /// served.
    private func readLogin(_ connection: Connection, _ input: UnsafeRawBufferPointer, consumed: inout Int) -> Bool {
        let context = worker.context
        guard let authentication = context.authentication else {
            authenticated = true
            return true
        }
        var lastRefusal: AsciiLogin.Refusal? = nil
        let turn = context.settings.requestsPerEvent
        var steps = 0
        while true {
            var used = 0
            let outcome = login.step(UnsafeRawBufferPointer(rebasing: input[consumed...]), consumed: &used) {
                authentication.accepts(user: $0, password: $1)
            }
            consumed += used
            switch outcome {
            case .refused(let refusal):
                if refusal == .authenticationFailure {
                    context.authCommands.wrappingAdd(1, ordering: .relaxed)
                    context.authErrors.wrappingAdd(1, ordering: .relaxed)
                    context.authFailures.log("-Y: login refused (user \(login.lastUser), wrong user or password)")
                }
                lastRefusal = refusal
                steps += 1
                if steps > turn && (steps - 1) % turn == 0 {
                    connection.output.append(refusal.reply)
                    lastRefusal = nil
                }
            case .loggedIn:
                context.authCommands.wrappingAdd(1, ordering: .relaxed)
                authenticated = true
                connection.output.append("STORED\r\n")
                return true
            case .needMore:
                if let lastRefusal { connection.output.append(lastRefusal.reply) }
                return false
            case .close:
                finish(connection)
                return false
            }
        }
    }

    /// Closes after the replies already gathered are written, as memcached does
    /// for quit, an HTTP request, an over-long line or shutdown.
    private func finish(_ connection: Connection) {
        finished = true
        connection.closeAfterFlush()
    }
}
