@testable import CacheProxy
import EventLoop
import Glibc
import Testing

@Suite struct DNSClientTests {
    /// Asks for mc.test's A records once, of a server `configure` sets up, on
    /// a loop of the test's own; `answered` sees the server when the answer comes.
    private func askOnce(timeoutMilliseconds: Int, configure: (FakeDNSServer) -> Void = { _ in },
                         answered: @escaping (FakeDNSServer) -> Void = { _ in }) throws -> Result<DNSResponse, DNSQueryFailure>? {
        var outcome: Result<DNSResponse, DNSQueryFailure>?
        try onLoop { loop, done in
            let server = try FakeDNSServer(loop: loop)
            configure(server)
            let client = DNSClient(server: try SocketAddress(host: "127.0.0.1", port: server.port), loop: loop,
                                   timeoutMilliseconds: timeoutMilliseconds)
            client.ask(.of("mc.test"), .a) { result in
                outcome = result
                answered(server)
                withExtendedLifetime(client) {}
                done()
            }
        }
        return outcome
    }

    @Test func asksAgainAfterALostDatagram() throws {
        var seen = 0
        let outcome = try askOnce(timeoutMilliseconds: 50, configure: { server in
            server.answer = { query in
                seen += 1
                return seen == 1 ? [] : [answer(to: query)]
            }
        })
        #expect(seen == 2)
        let response = try #require(try outcome?.get())
        #expect(response.answers == [DNSRecord(name: .of("mc.test"), data: .a([10, 0, 0, 0]))])
    }

    @Test func ignoresDatagramsThatAreNotTheAnswerAndSaysWhyWhenNothingElseCame() throws {
        var outcome: Result<DNSResponse, DNSQueryFailure>?
        var second: Result<DNSResponse, DNSQueryFailure>?
        try onLoop { loop, done in
            let server = try FakeDNSServer(loop: loop)
            // For mc.test: garbage with the right id first, then the answer.
            // For other.test: only garbage (a pointer loop).
            server.answer = { query in
                let garbage = Array(query.prefix(2)) + [0x81, 0x80, 0, 1, 0xFF, 0xFF, 0, 0, 0, 0, 0xC0, 12]
                return query.count > 20 && query[13] == UInt8(ascii: "m") ? [garbage, answer(to: query)] : [garbage]
            }
            let client = DNSClient(server: try SocketAddress(host: "127.0.0.1", port: server.port), loop: loop, timeoutMilliseconds: 40)
            client.ask(.of("mc.test"), .a) { outcome = $0 }
            client.ask(.of("other.test"), .a) { result in
                second = result
                withExtendedLifetime((server, client)) {}
                done()
            }
        }
        #expect(try outcome?.get().answers.count == 1)
        guard case .failure(let failure) = second else { Issue.record("expected a failure, got \(String(describing: second))"); return }
        #expect(failure.reason == "no answer after 3 attempts of 40 ms; the last unusable answer: malformed: a compression pointer that does not point back")
    }

    @Test func givesUpAfterItsAttempts() throws {
        var datagrams = 0
        let started = monotonicMilliseconds()
        let outcome = try askOnce(timeoutMilliseconds: 30, answered: { datagrams = $0.datagramsSeen })
        #expect(outcome == .failure(DNSQueryFailure("no answer after 3 attempts of 30 ms")))
        #expect(datagrams == 3)
        #expect(monotonicMilliseconds() - started >= 80)
    }

    @Test func asksATruncatedAnswerAgainOverTCP() throws {
        var streams = 0
        let outcome = try askOnce(timeoutMilliseconds: 500, configure: { server in
            server.answer = { query in [answer(to: query, count: 1, flags: 0x0200)] }
            server.streamAnswer = { query in answer(to: query, count: 300) }
        }, answered: { streams = $0.streamsSeen })
        #expect(streams == 1)
        #expect(try outcome?.get().answers.count == 300)
    }

    @Test func aServerThatIsNotThereFailsAtOnce() throws {
        // A port nothing listens on: the kernel answers port unreachable.
        let probe = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        let port = bindLoopback(probe)
        close(probe)
        var outcome: Result<DNSResponse, DNSQueryFailure>?
        let started = monotonicMilliseconds()
        try onLoop { loop, done in
            let client = DNSClient(server: try SocketAddress(host: "127.0.0.1", port: port), loop: loop, timeoutMilliseconds: 2000)
            client.ask(.of("mc.test"), .a) { result in
                outcome = result
                withExtendedLifetime(client) {}
                done()
            }
        }
        #expect(outcome == .failure(DNSQueryFailure("nothing answers at the server (connection refused)")))
        #expect(monotonicMilliseconds() - started < 1500)
    }

    @Test func manyQuestionsShareOneSocketAndACancelSilencesThem() throws {
        var answered = 0
        var afterCancel = 0
        let keeper = Keeper()
        try onLoop { loop, done in
            let server = try FakeDNSServer(loop: loop)
            server.answer = { query in [answer(to: query)] }
            let socketAddress = try SocketAddress(host: "127.0.0.1", port: server.port)
            let client = DNSClient(server: socketAddress, loop: loop, timeoutMilliseconds: 500)
            let cancelled = DNSClient(server: socketAddress, loop: loop, timeoutMilliseconds: 20)
            // Long enough for an answer, or for every attempt to time out.
            let wait = EventTimer(loop: loop, milliseconds: 150, repeating: false) {
                done()
            }
            keeper.objects += [server, client, cancelled, wait]
            for _ in 0..<100 {
                client.ask(.of("mc.test"), .a) { result in
                    if case .success = result { answered += 1 }
                    if answered == 100 {
                        cancelled.ask(.of("mc.test"), .a) { _ in afterCancel += 1 }
                        cancelled.cancel()
                        wait.start()
                    }
                }
            }
        }
        #expect(answered == 100)
        #expect(afterCancel == 0)
    }
}

