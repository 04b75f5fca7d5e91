import Buffers
import EventLoop
import MemcacheProtocol

/// One request and its reply on a fresh connection, with a deadline: the health
/// monitor's probe (`version`) and flush (`flush_all`), and the `stats` poll.
/// Main loop only.
// @unchecked: only the main loop touches it; `loop.execute` merely defers a call.
final class LineExchange: ConnectionHandler, @unchecked Sendable {
    enum Outcome {
        /// The reply's (last) line kind; for `stats`, the STAT lines before `END`.
        case replied(ResponseKind, stats: [(String, String)])
        case failed
    }

    private var connection: Connection?
    private var timer: EventTimer?
    private var completion: ((Outcome) -> Void)?
    private let parser = ResponseParser()
    private var stats: [(String, String)] = []

    /// Connects to `address`, sends `request`, and calls `completion` once with
    /// the kind of the first reply line, or `.failed`.
    @discardableResult
    static func run(_ request: StaticString, to address: SocketAddress, loop: EventLoop, timeoutMilliseconds: Int,
                    dialer: NodeDialer = .plain, completion: @escaping (Outcome) -> Void) -> LineExchange {
        let exchange = LineExchange()
        exchange.completion = completion
        do {
            let connection = try dialer.connect(to: address, loop: loop, handler: exchange)
            connection.output.append(request)
            exchange.connection = connection
            let timer = EventTimer(loop: loop, milliseconds: timeoutMilliseconds, repeating: false) { [exchange] in
                exchange.finish(.failed)
            }
            timer.start()
            exchange.timer = timer
        } catch {
            // Report asynchronously, like every other outcome.
            loop.execute { [exchange] in exchange.finish(.failed) }
        }
        return exchange
    }

    private func finish(_ outcome: Outcome) {
        guard let completion else { return }
        self.completion = nil
        timer?.stop()
        timer = nil
        connection?.close()
        connection = nil
        completion(outcome)
    }

    func connectionEstablished(_ connection: Connection) {}

    func connectionReadable(_ connection: Connection) {
        while true {
            let bytes = connection.input.readableBytes
            switch parser.parse(bytes) {
            case .response(let unit):
                connection.input.consume(unit.length)
                guard unit.kind == .stat else { return finish(.replied(unit.kind, stats: stats)) }
                stats.append((String(decoding: bytes[unit.key], as: UTF8.self), String(decoding: bytes[unit.text], as: UTF8.self)))
            case .needMoreData: return
            case .malformed: return finish(.failed)
            }
        }
    }

    func connectionDrained(_ connection: Connection) {}

    func connectionClosed(_ connection: Connection) { finish(.failed) }
}
