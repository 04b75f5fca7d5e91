import EventLoop

/// One DNS question over TCP (RFC 1035 §4.2.2, RFC 7766): the query after
/// its two-byte length, one answer back the same way, then the connection
/// closes. For answers too large for a datagram. Bounded: the answer is at
/// most 65,535 bytes by its length field, and the exchange ends at the
/// deadline whatever the server does. Main loop only.
final class DNSStreamExchange: ConnectionHandler {
    typealias Completion = (Result<[UInt8], DNSQueryFailure>) -> Void

    private var connection: Connection?
    private var timer: EventTimer?
    private var completion: Completion?

    /// Connects to `server`, sends `message`, and calls `completion` once
    /// with the answer's bytes (not yet parsed) or why there are none; never
    /// after `cancel()`, and never from within this call.
    static func run(_ message: [UInt8], to server: SocketAddress, loop: EventLoop, timeoutMilliseconds: Int,
                    completion: @escaping Completion) -> DNSStreamExchange {
        let exchange = DNSStreamExchange()
        exchange.completion = completion
        let timer = EventTimer(loop: loop, milliseconds: timeoutMilliseconds, repeating: false) { [unowned exchange] in
            exchange.finish(.failure(.init("no answer within \(timeoutMilliseconds) ms")))
        }
        exchange.timer = timer
        do {
            let fd = try Socket.connect(to: server)
            let connection = Connection(connecting: fd, loop: loop, handler: exchange)
            var length = [UInt8(message.count >> 8), UInt8(message.count & 0xFF)]
            length.append(contentsOf: message)
            length.withUnsafeBytes { connection.output.append($0) }
            exchange.connection = connection
            timer.start()
        } catch {
            // Reported through the timer, like every other outcome: never from within `run`.
            let reason = "\(error)"
            let failed = EventTimer(loop: loop, milliseconds: 0, repeating: false) { [unowned exchange] in
                exchange.finish(.failure(.init(reason)))
            }
            exchange.timer = failed
            failed.start()
        }
        return exchange
    }

    func cancel() {
        completion = nil
        finish(.failure(.init("cancelled")))
    }

    private func finish(_ result: Result<[UInt8], DNSQueryFailure>) {
        // The completion may let go of this exchange while its connection's
        // callback is still on the stack.
        withExtendedLifetime(self) { end(result) }
    }

    private func end(_ result: Result<[UInt8], DNSQueryFailure>) {
        timer?.stop()
        let connection = self.connection
        self.connection = nil
        connection?.close()
        guard let completion else { return }
        self.completion = nil
        completion(result)
    }

    func connectionReadable(_ connection: Connection) {
        let bytes = connection.input.readableBytes
        guard bytes.count >= 2 else { return }
        let length = Int(bytes[0]) << 8 | Int(bytes[1])
        guard bytes.count >= 2 + length else { return }
        // Anything after the answer is ignored: the connection closes now.
        finish(.success(Array(bytes[2..<(2 + length)])))
    }

    func connectionDrained(_ connection: Connection) {}

    func connectionInputEnded(_ connection: Connection) {
        finish(.failure(.init("the server closed the connection before a whole answer")))
    }

    func connectionClosed(_ connection: Connection) {
        guard self.connection != nil else { return }
        self.connection = nil
        let reason = connection.closeError != 0 ? "\(SystemCallError("connect", errno: connection.closeError))" : "the connection closed"
        finish(.failure(.init(reason)))
    }
}
