@testable import MemcacheProtocol

/// Plays the part of a node's connection: appends received bytes, parses every
/// complete request, consumes and swallows as the outcomes say, and records them.
struct ConnectionDriver {
    let parser: RequestParser
    private(set) var buffer: [UInt8] = []
    private(set) var swallowing = 0
    private(set) var outcomes: [Outcome] = []
    private(set) var closed = false

    init(_ parser: RequestParser = RequestParser()) { self.parser = parser }

    /// True when nothing is pending: no partial request, nothing left to swallow.
    var isIdle: Bool { buffer.isEmpty && swallowing == 0 }

    mutating func receive(_ chunk: some Collection<UInt8>) {
        if closed { return }
        buffer.append(contentsOf: chunk)
        while !closed {
            if swallowing > 0 {
                let dropped = min(swallowing, buffer.count)
                buffer.removeFirst(dropped)
                swallowing -= dropped
                if swallowing > 0 { return }
            }
            if buffer.isEmpty { return }
            let parser = self.parser
            let (result, consumed, swallow): (Outcome?, Int, Int) = buffer.withUnsafeBytes { bytes in
                let parsed = parser.parse(bytes)
                switch parsed {
                case .request(let request):
                    return (outcome(parsed, in: bytes), request.length, 0)
                case .needMoreData:
                    return (nil, 0, 0)
                case .invalid(_, let consume, let swallow, _):
                    return (outcome(parsed, in: bytes), consume, swallow)
                case .tooLarge(_, let consume, let swallow):
                    return (outcome(parsed, in: bytes), consume, swallow)
                case .close:
                    return (.close, 0, 0)
                case .lineTooLong:
                    return (.lineTooLong, 0, 0)
                }
            }
            guard let result else { return }
            outcomes.append(result)
            if result == .close || result == .lineTooLong { closed = true; return }
            precondition(consumed > 0 && consumed <= buffer.count, "outcome consumes \(consumed) of \(buffer.count)")
            buffer.removeFirst(consumed)
            swallowing = swallow
        }
    }

    /// Feeds `input` in chunks of `size` bytes.
    static func run(_ input: [UInt8], chunk size: Int, _ parser: RequestParser = RequestParser()) -> ConnectionDriver {
        var driver = ConnectionDriver(parser)
        var start = 0
        while start < input.count {
            let end = min(start + size, input.count)
            driver.receive(input[start..<end])
            start = end
        }
        return driver
    }

    /// Feeds `input` in two chunks split at `split`.
    static func run(_ input: [UInt8], splitAt split: Int, _ parser: RequestParser = RequestParser()) -> ConnectionDriver {
        var driver = ConnectionDriver(parser)
        driver.receive(input[0..<split])
        driver.receive(input[split...])
        return driver
    }
}
