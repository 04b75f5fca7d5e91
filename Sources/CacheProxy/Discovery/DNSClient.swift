import EventLoop
import Glibc

/// Asks one DNS server questions, several at once, on the proxy's main loop
/// without ever blocking it: each question is a datagram on one connected UDP
/// socket, sent again after `timeoutMilliseconds` up to `attempts` times; an
/// answer that comes back truncated is asked again over TCP. Every answer is
/// read as hostile (`DNSResponse.parse`). A datagram that is not a well-formed
/// answer to a question in flight is ignored rather than believed or allowed
/// to end the question (it may be forged); why, is reported if no good answer
/// follows. Main loop only; `cancel()` drops every question unanswered.
final class DNSClient {
    typealias Completion = (Result<DNSResponse, DNSQueryFailure>) -> Void

    private let server: SocketAddress
    private let loop: EventLoop
    private let timeoutMilliseconds: Int
    private let attempts: Int
    private var socket: DatagramSocket?
    private var pending: [UInt16: Question] = [:]
    /// Questions waiting for a TCP slot, and those using one.
    private var streamQueue: [Question] = []
    private var streams = 0
    private var receiveBuffer: [UInt8]
    private var cancelled = false
    /// Completions waiting to run (see `later`).
    private var deferred: [() -> Void] = []
    private var runDeferred: DeferredTask?

    /// Most questions in flight at once; more are refused (the caller asks in batches).
    static let questionLimit = 256
    /// Most TCP exchanges at once: a server that truncates every answer does
    /// not get a connection per question.
    static let streamLimit = 4
    /// Datagrams read per wake-up, so a flood cannot hold the loop.
    static let datagramsPerWakeup = 64
    /// A UDP answer longer than a non-EDNS server may send (512) is still
    /// read up to this size; larger ones are dropped.
    static let datagramLimit = 4096

    private enum Transport {
        case datagram
        /// Truncated over UDP, waiting for a TCP slot.
        case streamQueued
        case stream(DNSStreamExchange)

        var isDatagram: Bool { if case .datagram = self { return true } else { return false } }
    }

    private final class Question {
        let id: UInt16
        let name: DNSName
        let type: DNSRecordType
        let message: [UInt8]
        var attemptsLeft: Int
        var timer: EventTimer?
        var transport = Transport.datagram
        /// Why the last unusable datagram for this id was ignored.
        var lastProblem: String?
        let completion: Completion

        init(id: UInt16, name: DNSName, type: DNSRecordType, attempts: Int, completion: @escaping Completion) {
            self.id = id
            self.name = name
            self.type = type
            self.message = DNSQuery.encode(id: id, name: name, type: type)
            self.attemptsLeft = attempts
            self.completion = completion
        }
    }

    init(server: SocketAddress, loop: EventLoop, timeoutMilliseconds: Int, attempts: Int = 3) {
        self.server = server
        self.loop = loop
        self.timeoutMilliseconds = timeoutMilliseconds
        self.attempts = max(1, attempts)
        self.receiveBuffer = [UInt8](repeating: 0, count: DNSClient.datagramLimit)
        runDeferred = DeferredTask(loop: loop) { [unowned self] in
            // A completion may let go of the client: it stays alive until the
            // batch is over, and a cancel stops the rest.
            withExtendedLifetime(self) {
                while !cancelled, !deferred.isEmpty { deferred.removeFirst()() }
            }
        }
    }

    deinit { cancel() }

    /// Asks `name`/`type`; `completion` is called once, later, unless the
    /// client is cancelled first.
    func ask(_ name: DNSName, _ type: DNSRecordType, completion: @escaping Completion) {
        guard !cancelled else { return }
        guard pending.count < DNSClient.questionLimit else {
            return later { completion(.failure(.init("more than \(DNSClient.questionLimit) questions at once"))) }
        }
        if socket == nil {
            do {
                socket = try DatagramSocket(connectedTo: server, loop: loop) { [unowned self] in receive() }
            } catch {
                return later { completion(.failure(.init("\(error)"))) }
            }
        }
        // A random id per question: with the socket's random port, what an
        // off-path sender would have to guess to forge an answer.
        var id = UInt16.random(in: 0...UInt16.max)
        while pending[id] != nil { id = UInt16.random(in: 0...UInt16.max) }
        let question = Question(id: id, name: name, type: type, attempts: attempts, completion: completion)
        pending[id] = question
        let timer = EventTimer(loop: loop, milliseconds: timeoutMilliseconds, repeating: false) { [unowned self, unowned question] in
            timedOut(question)
        }
        question.timer = timer
        send(question)
    }

    /// Drops every question; no completion is called after this.
    func cancel() {
        cancelled = true
        for question in pending.values {
            question.timer?.stop()
            if case .stream(let exchange) = question.transport { exchange.cancel() }
        }
        pending.removeAll()
        streamQueue.removeAll()
        deferred.removeAll()
        socket?.close()
        socket = nil
    }

    /// Runs `task` once the current callback is over: a completion never runs
    /// inside `ask` (whose caller may not be ready for it) nor inside the
    /// client's own socket and timer callbacks (it may cancel the client).
    private func later(_ task: @escaping () -> Void) {
        deferred.append(task)
        runDeferred?.schedule()
    }

    private func send(_ question: Question) {
        question.attemptsLeft -= 1
        question.timer?.start()
        let result = question.message.withUnsafeBytes { socket?.send($0) ?? .failed(errno: EBADF) }
        switch result {
        case .transferred, .wouldBlock:
            // A datagram the kernel could not take is lost like one the network
            // dropped: the timer sends it again.
            return
        case .failed(let error):
            finish(question, .failure(.init(Self.reason(error))))
        case .endOfFile:
            finish(question, .failure(.init("the socket closed")))
        }
    }

    private func timedOut(_ question: Question) {
        guard pending[question.id] === question, question.transport.isDatagram else { return }
        if question.attemptsLeft > 0 { return send(question) }
        let problem = question.lastProblem.map { "; the last unusable answer: \($0)" } ?? ""
        finish(question, .failure(.init("no answer after \(attempts) attempts of \(timeoutMilliseconds) ms\(problem)")))
    }

    private func receive() {
        for _ in 0..<DNSClient.datagramsPerWakeup {
            guard let socket, !cancelled else { return }
            let result = receiveBuffer.withUnsafeMutableBytes { socket.receive(into: $0) }
            switch result {
            case .received(let count):
                accept(Array(receiveBuffer[0..<count]))
            case .truncated:
                continue
            case .wouldBlock:
                return
            case .failed(let error):
                // ECONNREFUSED: the server's host said nothing listens there
                // (ICMP port unreachable). It is not tied to one question:
                // every question waiting on UDP has its answer.
                for question in pending.values where question.transport.isDatagram {
                    finish(question, .failure(.init(Self.reason(error))))
                }
                return
            }
        }
    }

    private func accept(_ datagram: [UInt8]) {
        guard let id = DNSResponse.id(of: datagram), let question = pending[id], question.transport.isDatagram else { return }
        do {
            let response = try DNSResponse.parse(datagram, id: id, name: question.name, type: question.type)
            if response.truncated { return startStream(question) }
            finish(question, .success(response))
        } catch {
            question.lastProblem = "\(error)"
        }
    }

    // MARK: TCP, for truncated answers

    private func startStream(_ question: Question) {
        question.timer?.stop()
        guard streams < DNSClient.streamLimit else {
            // No longer on UDP: late datagrams and the UDP timer leave it alone.
            question.transport = .streamQueued
            streamQueue.append(question)
            return
        }
        streams += 1
        question.transport = .stream(DNSStreamExchange.run(question.message, to: server, loop: loop,
                                                timeoutMilliseconds: timeoutMilliseconds * attempts) { [unowned self, question] result in
            streams -= 1
            guard pending[question.id] === question else { return startQueuedStream() }
            switch result {
            case .success(let bytes):
                do {
                    let response = try DNSResponse.parse(bytes, id: question.id, name: question.name, type: question.type)
                    // Truncated over TCP too: nothing more to ask for.
                    finish(question, response.truncated ? .failure(.init("the answer is truncated even over TCP")) : .success(response))
                } catch {
                    finish(question, .failure(.init("over TCP: \(error)")))
                }
            case .failure(let failure):
                finish(question, .failure(.init("over TCP: \(failure)")))
            }
            startQueuedStream()
        })
    }

    private func startQueuedStream() {
        while streams < DNSClient.streamLimit, !streamQueue.isEmpty {
            let question = streamQueue.removeFirst()
            guard pending[question.id] === question else { continue }
            startStream(question)
        }
    }

    private func finish(_ question: Question, _ result: Result<DNSResponse, DNSQueryFailure>) {
        guard pending[question.id] === question else { return }
        pending[question.id] = nil
        question.timer?.stop()
        question.timer = nil
        question.transport = .datagram
        let completion = question.completion
        later { completion(result) }
    }

    private static func reason(_ error: Int32) -> String {
        error == ECONNREFUSED ? "nothing answers at the server (connection refused)" : String(cString: strerror(error))
    }
}

/// Why a question got no usable answer.
struct DNSQueryFailure: Error, Equatable, CustomStringConvertible {
    let reason: String
    init(_ reason: String) { self.reason = reason }
    var description: String { reason }
}
