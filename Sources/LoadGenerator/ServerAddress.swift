/// `--server host:port`.
public struct ServerAddress: Sendable, Equatable, Codable, CustomStringConvertible {
    public let host: String
    public let port: UInt16

    public static let defaultPort: UInt16 = 11211

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// `host:port`, `[ipv6]:port`, `host` (port 11211) or `[ipv6]`.
    public init(parsing text: String) throws(ConfigurationError) {
        var host = Substring(text)
        var portText: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw ConfigurationError("--server '\(text)': missing ']' after an IPv6 address")
            }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else { throw ConfigurationError("--server '\(text)' is not [address]:port") }
                portText = rest.dropFirst()
            }
        } else if let colon = text.lastIndex(of: ":") {
            if text[..<colon].contains(":") {
                throw ConfigurationError("--server '\(text)': write IPv6 addresses as [address]:port")
            }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard !host.isEmpty else { throw ConfigurationError("--server '\(text)' has no host") }
        var port = ServerAddress.defaultPort
        if let portText {
            guard let parsed = UInt16(portText), parsed > 0 else {
                throw ConfigurationError("--server '\(text)': port must be 1-65535")
            }
            port = parsed
        }
        self.init(host: String(host), port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
