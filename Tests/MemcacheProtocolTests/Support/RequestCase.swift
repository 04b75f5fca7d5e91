@testable import MemcacheProtocol
import Testing

/// One row of a request table: input bytes and the outcome of parsing them whole.
struct RequestCase: Sendable, CustomTestStringConvertible {
    let input: [UInt8]
    let expected: Outcome
    let limits: RequestLimits
    /// Whether `OracleTests` may replay this row against a real memcached and expect
    /// the replies the outcome implies (false for documented deviations).
    let oracle: Bool
    private let decidedAtOverride: Int?

    init(_ input: [UInt8], _ expected: Outcome, limits: RequestLimits = RequestLimits(), oracle: Bool = true,
         decidedAt: Int? = nil) {
        self.input = input
        self.limits = limits
        self.oracle = oracle
        self.decidedAtOverride = decidedAt
        self.expected = RequestCase.resolve(expected, input)
    }

    init(_ text: String, _ expected: Outcome, limits: RequestLimits = RequestLimits(), oracle: Bool = true,
         decidedAt: Int? = nil) {
        self.init(b(text), expected, limits: limits, oracle: oracle, decidedAt: decidedAt)
    }

    var testDescription: String {
        let text = show(input)
        return text.count > 90 ? String(text.prefix(60)) + "…(\(input.count) bytes)" : text
    }

    /// The length of the first line, `\n` included.
    static func firstLineLength(_ input: [UInt8]) -> Int {
        (input.firstIndex(of: 0x0A) ?? (input.count - 1)) + 1
    }

    /// Fills in the placeholders of an expectation: length nil = the whole input,
    /// consume -1 = the first line.
    static func resolve(_ expected: Outcome, _ input: [UInt8]) -> Outcome {
        switch expected {
        case .request(var summary):
            if summary.length == nil { summary.length = input.count }
            return .request(summary)
        case .invalid(let error, let consume, let swallow, let quiet):
            return .invalid(error, consume: consume < 0 ? firstLineLength(input) : consume, swallow: swallow, quiet: quiet)
        case .tooLarge(var summary, let consume, let swallow):
            let line = firstLineLength(input)
            if summary.length == nil { summary.length = line + swallow }
            return .tooLarge(summary, consume: consume < 0 ? line : consume, swallow: swallow)
        default:
            return expected
        }
    }

    /// Bytes of the input at which the outcome is decided: every shorter prefix must
    /// give `.needMoreData`, every longer one the same outcome.
    var decidedAt: Int {
        if let decidedAtOverride { return decidedAtOverride }
        switch expected {
        case .request(let summary): return summary.length ?? input.count
        case .invalid(_, let consume, _, _): return consume
        case .tooLarge(_, let consume, _): return consume
        case .close, .lineTooLong, .needMoreData: return input.count
        }
    }
}

// MARK: - Expectation builders

/// A classic request.
func req(_ command: Command, key: String = "", keys: [String]? = nil, flags: UInt32 = 0, exptime: Int64 = 0,
         cas: UInt64 = 0, delta: UInt64 = 0, data: String? = nil, noreply: Bool = false,
         arguments: String = "", numeric: UInt64 = 0, length: Int? = nil) -> Outcome {
    var summary = Summary(command: command)
    summary.length = length
    summary.key = key
    summary.keys = keys ?? (command.isMultiKeyRetrieval && !key.isEmpty ? [key] : [])
    summary.flags = flags
    summary.exptime = exptime
    summary.cas = cas
    summary.delta = delta
    summary.data = command.carriesData ? (data ?? "") : nil
    summary.noreply = noreply
    summary.arguments = arguments
    summary.numeric = numeric
    return .request(summary)
}

/// A meta request; the classic fields mirror the meta tokens as the parser sets them.
func meta(_ command: Command, key: String, letters: String = "", tokens: String = "", opaque: String = "",
          ttl: Int64? = nil, vivify: Int64 = 0, recache: Int64 = 0, compareCas: UInt64 = 0,
          clientFlags: UInt32 = 0, mode: Character? = nil, delta: UInt64 = 1, initial: UInt64 = 0,
          decodedKeyLength: Int = 0, data: String? = nil, length: Int? = nil) -> Outcome {
    var summary = Summary(command: command)
    summary.length = length
    summary.key = key
    summary.flags = clientFlags
    summary.exptime = ttl ?? 0
    summary.cas = compareCas
    summary.delta = command == .metaDebug ? 0 : delta   // me has no D: its classic delta stays 0
    summary.data = command.carriesData ? (data ?? "") : nil
    summary.meta = MetaSummary(letters: letters, tokens: tokens, opaque: opaque, ttl: ttl ?? 0, vivify: vivify,
                               recache: recache, compareCas: compareCas, clientFlags: clientFlags, mode: mode,
                               delta: delta, initial: initial, decodedKeyLength: decodedKeyLength)
    return .request(summary)
}

/// An error reply; consume defaults to the first line.
func err(_ error: ProtocolError, consume: Int = -1, swallow: Int = 0, quiet: Bool = false) -> Outcome {
    .invalid(error, consume: consume, swallow: swallow, quiet: quiet)
}

let ERROR = err(.error)

/// A too-large storage request (the summary as `req`/`meta` would build it, data empty).
func tooLarge(_ request: Outcome, swallow: Int) -> Outcome {
    guard case .request(var summary) = request else { fatalError("tooLarge needs a request") }
    summary.data = ""
    return .tooLarge(summary, consume: -1, swallow: swallow)
}

/// `count` repetitions of `text`.
func rep(_ text: String, _ count: Int) -> String { String(repeating: text, count: count) }

/// Compares the outcome of parsing `input` whole with `expected` (placeholders
/// resolved), recording a short issue instead of printing huge values.
func check(_ input: [UInt8], _ expected: Outcome, _ parser: RequestParser = RequestParser(),
           sourceLocation: SourceLocation = #_sourceLocation) {
    let want = RequestCase.resolve(expected, input)
    let got = parse(input, parser)
    if got != want {
        Issue.record("\(String(show(input).prefix(80))): got \(String(got.description.prefix(300))), expected \(String(want.description.prefix(300)))",
                     sourceLocation: sourceLocation)
    }
}
