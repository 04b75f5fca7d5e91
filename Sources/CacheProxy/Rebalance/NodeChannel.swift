import Buffers
import EventLoop
import MemcacheProtocol

/// One pipelined connection to a node for the rebalance: meta requests go
/// out in order and each reply is handed to the callback of the request at
/// the head. A reply that is not a meta reply, a closed connection, or a head
/// request older than the deadline fails every request outstanding and
/// closes the channel (the rebalance opens another). Main loop only.
// @unchecked: only the main loop touches it.
final class NodeChannel: ConnectionHandler, @unchecked Sendable {
    enum Reply {
        case value(MetaValue, [UInt8])
        /// `HD`: stored (ms), deleted (md), or present (mg without v), with
        /// its CAS when asked for.
        case hit(cas: UInt64?)
        case notStored
        /// `EN` or `NF`.
        case missing
        case exists
        case failed
    }

    let node: BackendNode
    private var connection: Connection?
    private var pending = RingQueue<(sentAt: Int64, reply: (Reply) -> Void)>()
    private let parser = ResponseParser()
    private(set) var isClosed = false

    var outstanding: Int { pending.count }

    init(node: BackendNode, loop: EventLoop, dialer: NodeDialer) {
        self.node = node
        do {
            connection = try dialer.connect(to: node.address, loop: loop, handler: self)
        } catch {
            isClosed = true
        }
    }

    /// Sends what `encode` writes, one meta request; `reply` gets its answer.
    func send(now: Int64, _ encode: (inout ByteBuffer) -> Void, reply: @escaping (Reply) -> Void) {
        guard let connection, !isClosed else { return reply(.failed) }
        encode(&connection.output)
        pending.append((now, reply))
        connection.flush()
    }

    /// Fails everything when the oldest request has waited past `deadline`.
    func expire(olderThan deadline: Int64) {
        if let head = pending.first, head.sentAt < deadline { close() }
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        connection?.close()
        connection = nil
        while !pending.isEmpty { pending.removeFirst().reply(.failed) }
    }

    func connectionReadable(_ connection: Connection) {
        while !isClosed {
            let bytes = connection.input.readableBytes
            switch parser.parse(bytes) {
            case .needMoreData: return
            case .malformed: return close()
            case .response(let unit):
                guard !pending.isEmpty else { return close() }
                let head = pending.removeFirst()
                let reply: Reply
                switch unit.kind {
                case .metaValue:
                    guard let value = MetaValue(unit, in: bytes) else { return close() }
                    reply = .value(value, Array(bytes[unit.data]))
                case .metaHit: reply = .hit(cas: MetaValue.cas(of: unit, in: bytes))
                case .metaNotStored: reply = .notStored
                case .metaMiss, .metaNotFound: reply = .missing
                case .metaExists: reply = .exists
                default:
                    head.reply(.failed)
                    return close()
                }
                connection.input.consume(unit.length)
                head.reply(reply)
            }
        }
    }

    func connectionDrained(_ connection: Connection) {}

    func connectionClosed(_ connection: Connection) {
        self.connection = nil
        close()
    }
}
