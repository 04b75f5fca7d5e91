import Testing
@testable import MemcacheProtocol

/// Bytes from a string literal; `\xNN` (written `\\xNN` in Swift) stands for one raw byte.
func b(_ text: String) -> [UInt8] {
    var result: [UInt8] = []
    let utf8 = Array(text.utf8)
    var index = 0
    while index < utf8.count {
        if utf8[index] == UInt8(ascii: "\\"), index + 3 < utf8.count, utf8[index + 1] == UInt8(ascii: "x"),
           let value = UInt8(String(decoding: utf8[(index + 2)...(index + 3)], as: UTF8.self), radix: 16) {
            result.append(value)
            index += 4
        } else {
            result.append(utf8[index])
            index += 1
        }
    }
    return result
}

/// Printable form of bytes for test names and diffs.
func show(_ bytes: some Collection<UInt8>) -> String {
    var text = ""
    for byte in bytes {
        switch byte {
        case 0x0D: text += "\\r"
        case 0x0A: text += "\\n"
        case 0x20...0x7E where byte != UInt8(ascii: "\\"): text.unicodeScalars.append(Unicode.Scalar(byte))
        default: text += "\\x" + (byte < 16 ? "0" : "") + String(byte, radix: 16)
        }
    }
    return text
}

/// A request's fields as plain values, so tests compare them with `==`.
struct Summary: Equatable, Sendable, CustomStringConvertible {
    var command: Command
    var length: Int? = nil      // nil in an expectation: the whole input
    var key = ""
    var keys: [String] = []
    var flags: UInt32 = 0
    var exptime: Int64 = 0
    var cas: UInt64 = 0
    var delta: UInt64 = 0
    var data: String? = nil
    var noreply = false
    var arguments = ""
    var numeric: UInt64 = 0
    var meta = MetaSummary()

    var description: String {
        var parts = ["\(command)"]
        if let length { parts.append("length=\(length)") }
        if !key.isEmpty { parts.append("key=\(key)") }
        if !keys.isEmpty { parts.append("keys=\(keys)") }
        if flags != 0 { parts.append("flags=\(flags)") }
        if exptime != 0 { parts.append("exptime=\(exptime)") }
        if cas != 0 { parts.append("cas=\(cas)") }
        if delta != 0 { parts.append("delta=\(delta)") }
        if let data { parts.append("data=\(data)") }
        if noreply { parts.append("noreply") }
        if !arguments.isEmpty { parts.append("arguments=\(arguments)") }
        if numeric != 0 { parts.append("numeric=\(numeric)") }
        if meta != MetaSummary() { parts.append("meta=\(meta)") }
        return parts.joined(separator: " ")
    }
}

struct MetaSummary: Equatable, Sendable, CustomStringConvertible {
    var letters = ""            // present flags, sorted A-Z then a-z
    var tokens = ""
    var opaque = ""
    var ttl: Int64 = 0
    var vivify: Int64 = 0
    var recache: Int64 = 0
    var compareCas: UInt64 = 0
    var clientFlags: UInt32 = 0
    var mode: Character? = nil
    var delta: UInt64 = 1
    var initial: UInt64 = 0
    var decodedKeyLength = 0

    var description: String {
        "[\(letters)] tokens=\(tokens) O=\(opaque) T=\(ttl) N=\(vivify) R=\(recache) C=\(compareCas) F=\(clientFlags) M=\(mode.map(String.init) ?? "-") D=\(delta) J=\(initial) b=\(decodedKeyLength)"
    }
}

/// A parse outcome as plain values.
enum Outcome: Equatable, Sendable, CustomStringConvertible {
    case request(Summary)
    case needMoreData(Int?)
    case invalid(ProtocolError, consume: Int, swallow: Int, quiet: Bool)
    case tooLarge(Summary, consume: Int, swallow: Int)
    case close
    case lineTooLong

    var description: String {
        switch self {
        case .request(let summary): return "request(\(summary))"
        case .needMoreData(let total): return "needMoreData(\(total.map(String.init) ?? "nil"))"
        case .invalid(let error, let consume, let swallow, let quiet):
            return "invalid(\(error.line), consume: \(consume), swallow: \(swallow)\(quiet ? ", quiet" : ""))"
        case .tooLarge(let summary, let consume, let swallow):
            return "tooLarge(\(summary), consume: \(consume), swallow: \(swallow))"
        case .close: return "close"
        case .lineTooLong: return "lineTooLong"
        }
    }
}

func string(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> String {
    show(UnsafeRawBufferPointer(rebasing: bytes[range]))
}

func summarize(_ request: Request, in bytes: UnsafeRawBufferPointer) -> Summary {
    var summary = Summary(command: request.command)
    summary.length = request.length
    summary.key = string(bytes, request.key)
    if request.command.isMultiKeyRetrieval {
        summary.keys = KeyTokens(bytes, request.keys).map { string(bytes, $0) }
    }
    summary.flags = request.flags
    summary.exptime = request.exptime
    summary.cas = request.casUnique
    summary.delta = request.delta
    if request.command.carriesData { summary.data = string(bytes, request.data) }
    summary.noreply = request.noreply
    summary.arguments = string(bytes, request.arguments)
    summary.numeric = request.numericArgument
    let meta = request.meta
    var letters = ""
    for letter in Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8) where meta.has(letter) {
        letters.unicodeScalars.append(Unicode.Scalar(letter))
    }
    summary.meta = MetaSummary(
        letters: letters, tokens: string(bytes, meta.tokens), opaque: string(bytes, meta.opaque),
        ttl: meta.ttl, vivify: meta.vivifyTTL, recache: meta.recacheTTL, compareCas: meta.compareCas,
        clientFlags: meta.clientFlags, mode: meta.mode == 0 ? nil : Character(Unicode.Scalar(meta.mode)),
        delta: meta.delta, initial: meta.initial, decodedKeyLength: meta.decodedKeyLength)
    return summary
}

func outcome(_ parsed: ParseOutcome, in bytes: UnsafeRawBufferPointer) -> Outcome {
    switch parsed {
    case .request(let request): return .request(summarize(request, in: bytes))
    case .needMoreData(let total): return .needMoreData(total)
    case .invalid(let error, let consume, let swallow, let quiet):
        return .invalid(error, consume: consume, swallow: swallow, quiet: quiet)
    case .tooLarge(let request, let consume, let swallow):
        return .tooLarge(summarize(request, in: bytes), consume: consume, swallow: swallow)
    case .close: return .close
    case .lineTooLong: return .lineTooLong
    }
}

/// Parses exactly `bytes` (a buffer of that size, so over-reads would be visible to ASan).
func parse(_ bytes: [UInt8], _ parser: RequestParser = RequestParser()) -> Outcome {
    bytes.withUnsafeBytes { outcome(parser.parse($0), in: $0) }
}

/// Parses with `parse(_:into:)`, into a `Request` left dirty by an earlier parse
/// (to prove every field is reset), and maps the status to an `Outcome`.
func parseInto(_ bytes: [UInt8], _ parser: RequestParser = RequestParser()) -> Outcome {
    var request = Request(command: .get)
    let dirty = b("ms k 2 T5 F3 C8 MA Oxy b q\r\nxy\r\n")
    _ = dirty.withUnsafeBytes { parser.parse($0, into: &request) }
    request.numericArgument = 7
    request.arguments = 3..<4
    request.keys = 1..<2
    return bytes.withUnsafeBytes { raw in
        switch parser.parse(raw, into: &request) {
        case .request: return .request(summarize(request, in: raw))
        case .needMoreData(let total): return .needMoreData(total)
        case .invalid(let error, let consume, let swallow, let quiet):
            return .invalid(error, consume: consume, swallow: swallow, quiet: quiet)
        case .tooLarge(let consume, let swallow):
            return .tooLarge(summarize(request, in: raw), consume: consume, swallow: swallow)
        case .close: return .close
        case .lineTooLong: return .lineTooLong
        }
    }
}
