/// `node_auth:` the user and password the proxy logs in to `-Y` nodes with
/// (memcached's ASCII authentication). The password is read from
/// `password_file` when the configuration loads; no description shows it.
public struct NodeCredentials: Sendable, Equatable, CustomStringConvertible {
    public var user: String
    public var passwordFile: String
    /// Filled from `passwordFile` by `ProxyOptions.apply`.
    var password: [UInt8] = []

    public var description: String { "node_auth(user: \(user), password_file: \(passwordFile))" }

    /// The password: the file's content, surrounding blanks and line ends trimmed.
    static func readPassword(_ path: String) throws(ConfigurationError) -> [UInt8] {
        let bytes = try readFile(path, limit: 4096, what: "node_auth password file")
        let blanks: Set<UInt8> = [0x20, 0x09, 0x0D, 0x0A]
        var trimmed = bytes[...]
        while let first = trimmed.first, blanks.contains(first) { trimmed.removeFirst() }
        while let last = trimmed.last, blanks.contains(last) { trimmed.removeLast() }
        guard !trimmed.isEmpty, !trimmed.contains(where: { $0 < 0x20 || $0 == 0x7F }) else {
            throw ConfigurationError("node_auth password file \(path): expected one line, the password")
        }
        // A -Y node splits the login on spaces: such a password never matches.
        guard !trimmed.contains(0x20) else {
            throw ConfigurationError("node_auth password file \(path): a password with a space can never log in to a -Y node")
        }
        return Array(trimmed)
    }
}
