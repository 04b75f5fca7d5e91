import Glibc

/// memcached's ASCII authentication (`-Y <file>`): the file holds
/// `user:password` lines, and a connection proves itself with a `set` whose
/// data is `<user> <password>` before anything else. Until then every
/// request (and a `set` with other credentials) gets `CLIENT_ERROR
/// unauthenticated` and the connection closes; a good one gets `STORED`
/// (noreply or not). Read once at start, as memcached 1.6.18 does.
public struct AsciiAuthentication: Sendable {
    private let entries: [(user: [UInt8], password: [UInt8])]

    /// memcached's start-up refusals, word for word.
    public struct LoadError: Error, CustomStringConvertible {
        public let description: String
    }

    public init(file path: String) throws(LoadError) {
        guard let handle = fopen(path, "r") else {
            let reason = String(cString: strerror(errno))
            throw LoadError(description: "Could not open authfile [\(path)] for reading, error \(reason): \(reason)")
        }
        defer { fclose(handle) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = fread(&chunk, 1, chunk.count, handle)
            if count == 0 { break }
            bytes += chunk[..<count]
            if bytes.count > 64 << 20 { throw LoadError(description: "Authfile [\(path)] is too large") }
        }
        var entries: [(user: [UInt8], password: [UInt8])] = []
        for line in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true) {
            var line = line
            if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
            // As memcached: only a line without a colon is refused (an empty
            // user or password is an entry no one can match).
            guard let colon = line.firstIndex(of: UInt8(ascii: ":"))
            else { throw LoadError(description: "Authfile [\(path)] has a malformed entry. Should be 'user:password'") }
            entries.append((Array(line[..<colon]), Array(line[line.index(after: colon)...])))
        }
        self.entries = entries
    }

    /// Whether `data` (a set's data block) is `<user> <password>` of an entry.
    /// Every entry is compared, every byte of each, whatever matched before:
    /// the time taken tells nothing of how close a guess came.
    public func accepts(_ data: UnsafeRawBufferPointer) -> Bool {
        guard let space = data.firstIndex(of: UInt8(ascii: " ")) else { return false }
        let user = UnsafeRawBufferPointer(rebasing: data[..<space])
        let password = UnsafeRawBufferPointer(rebasing: data[(space + 1)...])
        var found = 0
        for entry in entries {
            found |= AsciiAuthentication.difference(entry.user, user) | AsciiAuthentication.difference(entry.password, password) == 0 ? 1 : 0
        }
        return found != 0
    }

    /// 0 when equal; read to the end either way.
    private static func difference(_ expected: [UInt8], _ given: UnsafeRawBufferPointer) -> Int {
        var difference = expected.count == given.count ? 0 : 1
        for index in 0..<expected.count {
            difference |= Int(expected[index] ^ (index < given.count ? given[index] : 0))
        }
        return difference
    }
}
