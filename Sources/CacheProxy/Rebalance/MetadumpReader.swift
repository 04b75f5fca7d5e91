import Buffers
import EventLoop

/// Lists every key a node holds with `lru_crawler metadump all` (memcached
/// 1.6 and memcluster-node both serve it): one `key=<URI-encoded> exp=...`
/// line per item, then `END`. Keys are handed over in batches; while the
/// consumer has not asked for more, the reader stops reading, so the node's
/// dump waits on the socket instead of piling up here. Main loop only.
// @unchecked: only the main loop touches it.
final class MetadumpReader: ConnectionHandler, @unchecked Sendable {
    enum Event {
        /// Keys, decoded; ask for more with `resume()`.
        case keys([[UInt8]])
        case finished
        /// The node refused (`BUSY`, `ERROR`, not a dump) or the connection failed.
        case failed(String)
    }

    private var connection: Connection?
    private let onEvent: (Event) -> Void
    private var done = false
    static let batch = 256
    /// Longer than any line a dump of memcached's 250-byte keys has.
    static let maxLine = 4096

    init(node: BackendNode, loop: EventLoop, dialer: NodeDialer, onEvent: @escaping (Event) -> Void) {
        self.onEvent = onEvent
        do {
            let connection = try dialer.connect(to: node.address, loop: loop, handler: self)
            connection.output.append("lru_crawler metadump all\r\n")
            self.connection = connection
        } catch {
            loop.execute { [self] in finish(.failed("cannot connect: \(error)")) }
        }
    }

    /// Reads on after a `.keys` batch.
    func resume() {
        guard let connection, !done else { return }
        connection.resumeReading()
        connectionReadable(connection)
    }

    func cancel() {
        done = true
        connection?.close()
        connection = nil
    }

    private func finish(_ event: Event) {
        guard !done else { return }
        done = true
        connection?.close()
        connection = nil
        onEvent(event)
    }

    func connectionReadable(_ connection: Connection) {
        var keys: [[UInt8]] = []
        while !done, keys.count < MetadumpReader.batch {
            let bytes = connection.input.readableBytes
            guard let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) else {
                if bytes.count > MetadumpReader.maxLine { finish(.failed("a dump line longer than \(MetadumpReader.maxLine) bytes")) }
                break
            }
            var line = Array(bytes[0..<newline])
            connection.input.consume(newline + 1)
            if line.last == UInt8(ascii: "\r") { line.removeLast() }
            if line == Array("END".utf8) {
                if !keys.isEmpty { onEvent(.keys(keys)) }
                return finish(.finished)
            }
            guard let key = MetadumpReader.key(of: line) else {
                return finish(.failed(String(decoding: line.prefix(80), as: UTF8.self)))
            }
            keys.append(key)
        }
        if !keys.isEmpty {
            connection.pauseReading()
            onEvent(.keys(keys))
        }
    }

    /// The key of a `key=<URI-encoded> exp=...` line, decoded.
    static func key(of line: [UInt8]) -> [UInt8]? {
        let prefix = Array("key=".utf8)
        guard line.starts(with: prefix) else { return nil }
        let end = line[prefix.count...].firstIndex(of: UInt8(ascii: " ")) ?? line.count
        return percentDecoded(line[prefix.count..<end])
    }

    static func percentDecoded(_ text: ArraySlice<UInt8>) -> [UInt8]? {
        var out: [UInt8] = []
        var index = text.startIndex
        while index < text.endIndex {
            let byte = text[index]
            if byte == UInt8(ascii: "%") {
                guard index + 2 < text.endIndex, let high = hexValue(text[index + 1]), let low = hexValue(text[index + 2]) else { return nil }
                out.append(high << 4 | low)
                index += 3
            } else {
                out.append(byte)
                index += 1
            }
        }
        return out.isEmpty ? nil : out
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    func connectionDrained(_ connection: Connection) {}

    func connectionClosed(_ connection: Connection) {
        self.connection = nil
        finish(.failed("the node closed the connection before END"))
    }
}
