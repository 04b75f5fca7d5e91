#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import MemcacheProtocol

// Replays the request tables against a real memcached 1.6.18 and checks that its
// replies are the ones the parser's outcomes imply. Off unless the environment
// names a running server started with default options (the item size test assumes
// -I 1m with CAS on), e.g. `memcached -p 22122 -l 127.0.0.1 -U 0 -u root`:
//     MEMCACHED_ORACLE_PORT=22122 swift test --filter OracleTests
//
// Each row gets a fresh connection and sends the row's bytes, then `mn`. (Nothing is
// sent before the row: memcached drops the unsent replies of earlier pipelined
// commands when it closes, and when a multi-get meets an over-long key.) Rows whose outcomes are all errors, closes and
// `mn` must produce exactly the implied replies (`ERROR`, `CLIENT_ERROR ...`,
// nothing when quiet, EOF on close). Rows with other requests must at least not be
// answered with an error memcached uses for malformed lines.

let oraclePort: UInt16? = {
    guard let text = getenv("MEMCACHED_ORACLE_PORT") else { return nil }
    return UInt16(String(cString: text))
}()

/// Commands whose replies the node decides from their arguments (memcached may say
/// ERROR to them), plus those that change the connection.
let oracleExempt: Set<Command> = [.stats, .lru, .lruCrawler, .watch, .slabs, .shutdown, .cacheMemlimit]

@Suite("memcached oracle", .serialized, .enabled(if: oraclePort != nil))
struct OracleTests {
    @Test("replies implied by the outcomes", arguments: allRequestCases.filter(\.oracle))
    func replay(_ row: RequestCase) throws {
        let driver = ConnectionDriver.run(row.input, chunk: row.input.count + 1, RequestParser(limits: row.limits))
        if !driver.isIdle && !driver.closed { return }   // leaves a partial request: nothing to compare
        var expected = ""
        var exact = true
        var closes = false
        for outcome in driver.outcomes {
            switch outcome {
            case .invalid(let error, _, _, let quiet):
                if !quiet { expected += "\(error.line)\r\n" }
            case .request(let summary):
                if summary.command == .metaNoop { expected += "MN\r\n" }
                else if summary.command == .quit { closes = true }
                else if oracleExempt.contains(summary.command) { return }
                else { exact = false }
            case .close:
                closes = true
            case .tooLarge, .needMoreData, .lineTooLong:
                // (memcached has no line limit to compare with)
                return
            }
        }
        var input = row.input
        if !closes { input += b("mn\r\n") }
        // The row's own replies may end with MN (and arrive apart, as `mn` flushes):
        // read at least as much as expected before looking for the final MN.
        let (reply, closed) = try exchange(input, port: oraclePort!, stopAfter: closes ? nil : "MN\r\n",
                                           atLeast: expected.utf8.count + 4)
        if closes {
            #expect(closed, "memcached kept the connection open")
            #expect(reply == expected)
        } else if exact {
            #expect(reply == expected + "MN\r\n")
        } else {
            #expect(reply.hasPrefix(expected), "reply: \(reply)")
            let rest = reply.dropFirst(expected.count)
            for bad in ["ERROR", "CLIENT_ERROR bad command", "CLIENT_ERROR invalid", "CLIENT_ERROR bad data"] {
                #expect(!rest.hasPrefix(bad), "memcached answered \(rest)")
            }
        }
    }

    @Test("item size limits measured on the binary")
    func itemSizes() throws {
        for (key, flags, size, fits) in [("abc", 0, 1048514, true), ("abc", 0, 1048515, false),
                                         ("abc", 1, 1048510, true), ("abc", 1, 1048511, false),
                                         (k250, 0, 1048267, true), (k250, 0, 1048268, false)] {
            let line = b("set \(key) \(flags) 0 \(size)\r\n")
            let parsed = parse(line)
            if fits {
                #expect(parsed == .needMoreData(line.count + size + 2))
            } else if case .tooLarge = parsed {} else {
                Issue.record("\(size) should be too large, got \(parsed)")
            }
            let input = line + Array(repeating: UInt8(ascii: "v"), count: size) + b("\r\nmn\r\n")
            let (reply, _) = try exchange(input, port: oraclePort!, stopAfter: "MN\r\n")
            #expect(reply == (fits ? "STORED\r\nMN\r\n" : "SERVER_ERROR object too large for cache\r\nMN\r\n"))
        }
    }
}

struct OracleError: Error, CustomStringConvertible {
    let description: String
}

/// Sends `input` on a new connection and reads until the reply ends with
/// `stopAfter`, the server closes, or 2 s pass without data.
func exchange(_ input: [UInt8], port: UInt16, stopAfter: String?, atLeast: Int = 0) throws -> (String, Bool) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw OracleError(description: "socket failed") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { throw OracleError(description: "cannot connect to memcached on port \(port)") }
    var timeout = timeval(tv_sec: 2, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var sent = 0
    while sent < input.count {
        let n = input[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if n <= 0 { break }
        sent += n
    }
    var reply: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n == 0 { return (String(decoding: reply, as: UTF8.self), true) }
        if n < 0 { return (String(decoding: reply, as: UTF8.self), errno == ECONNRESET) }
        reply += chunk[0..<n]
        if let stopAfter, reply.count >= max(atLeast, stopAfter.utf8.count),
           reply.suffix(stopAfter.utf8.count).elementsEqual(stopAfter.utf8) {
            return (String(decoding: reply, as: UTF8.self), false)
        }
    }
}
