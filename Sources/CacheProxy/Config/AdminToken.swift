import Glibc

/// The bearer token the admin endpoint asks for (`admin_token`, or read from
/// `admin_token_file`). No description or mirror shows the secret, so a
/// configuration that ends up in a log, an error message or `dump` cannot
/// leak it.
public struct AdminToken: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    private let secret: [UInt8]

    /// Long enough that guessing over HTTP is hopeless; short enough for one header line.
    public static let lengths = 16...1024

    /// nil unless `text` is 16 to 1024 printable ASCII characters without
    /// spaces: what goes through an `Authorization: Bearer` header, a
    /// Prometheus `credentials_file` and a shell unchanged.
    public init?(_ text: some StringProtocol) {
        let bytes = Array(text.utf8)
        guard AdminToken.lengths.contains(bytes.count), bytes.allSatisfy({ (0x21...0x7E).contains($0) }) else { return nil }
        secret = bytes
    }

    public var description: String { "<admin token, \(secret.count) characters>" }
    /// The secret itself, for the one place that sends it (`AdminPost`).
    var bearerValue: String { String(decoding: secret, as: UTF8.self) }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: []) }

    /// Whether `presented` is the token. Every byte of the token is compared
    /// whatever the earlier ones were, so the time taken tells a caller
    /// nothing about how much of a guess was right.
    public func matches(_ presented: some Collection<UInt8>) -> Bool {
        var difference: UInt8 = presented.count == secret.count ? 0 : 1
        var index = presented.startIndex
        for expected in secret {
            let byte: UInt8
            if index != presented.endIndex {
                byte = presented[index]
                index = presented.index(after: index)
            } else {
                byte = 0
            }
            difference |= byte ^ expected
        }
        return difference == 0
    }

    /// Reads a token file: its whole content, surrounding blanks and line
    /// ends trimmed (as Prometheus reads a `credentials_file`).
    public static func read(file path: String) throws(ConfigurationError) -> AdminToken {
        let bytes = try readFile(path, limit: 4096, what: "admin token file")
        let blanks: Set<UInt8> = [0x20, 0x09, 0x0D, 0x0A]
        var trimmed = bytes[...]
        while let first = trimmed.first, blanks.contains(first) { trimmed.removeFirst() }
        while let last = trimmed.last, blanks.contains(last) { trimmed.removeLast() }
        guard let token = AdminToken(String(decoding: trimmed, as: UTF8.self)) else {
            throw ConfigurationError("admin token file \(path): expected one token of 16 to 1024 printable ASCII characters without spaces")
        }
        return token
    }
}

/// A whole file's bytes, or an error naming it. Larger than `limit`: refused.
func readFile(_ path: String, limit: Int = Int.max, what: String = "") throws(ConfigurationError) -> [UInt8] {
    let label = what.isEmpty ? path : "\(what) \(path)"
    guard let file = fopen(path, "r") else {
        throw ConfigurationError("\(label): cannot open: \(String(cString: strerror(errno)))")
    }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = fread(&chunk, 1, chunk.count, file)
        if count <= 0 { break }
        bytes += chunk[0..<count]
        if bytes.count > limit { throw ConfigurationError("\(label): larger than \(limit) bytes") }
    }
    if ferror(file) != 0 { throw ConfigurationError("\(label): cannot read: \(String(cString: strerror(errno)))") }
    return bytes
}
