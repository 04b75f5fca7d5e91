import Concurrency
import Glibc

/// memcached's ASCII authentication (`-Y <file>`): the users and passwords
/// a connection may log in with (`AsciiLogin` reads the login itself). The
/// file is read at start, where a problem stops the node, and again on
/// SIGHUP, where a problem keeps the entries already loaded: both as
/// memcached 1.6.18 does.
public final class AsciiAuthentication: Sendable {
    public let path: String
    private let entries: Locked<[AuthFileEntry]>

    /// memcached's start-up refusals, word for word.
    public struct LoadError: Error, CustomStringConvertible {
        public let description: String
    }

    public init(file path: String) throws(LoadError) {
        self.path = path
        self.entries = Locked(try AsciiAuthentication.load(path))
    }

    /// SIGHUP: reads the file again; on failure the running entries stay.
    @discardableResult
    public func reload() -> Bool {
        guard let fresh = try? AsciiAuthentication.load(path) else { return false }
        entries.withLock { $0 = fresh }
        return true
    }

    /// Whether `user` and `password` are an entry's. Every entry is compared,
    /// every byte of each, whatever matched before: the time taken tells
    /// nothing of how close a guess came.
    public func accepts(user: UnsafeRawBufferPointer, password: UnsafeRawBufferPointer) -> Bool {
        entries.withLock { entries in
            var found = 0
            for entry in entries {
                let differs = AsciiAuthentication.difference(entry.user, user) | AsciiAuthentication.difference(entry.password, password)
                found |= differs == 0 ? 1 : 0
            }
            return found != 0
        }
    }

    /// 0 when equal; read to the end either way.
    private static func difference(_ expected: [UInt8], _ given: UnsafeRawBufferPointer) -> Int {
        var difference = expected.count == given.count ? 0 : 1
        for index in 0..<expected.count {
            difference |= Int(expected[index] ^ (index < given.count ? given[index] : 0))
        }
        return difference
    }

    private static func load(_ path: String) throws(LoadError) -> [AuthFileEntry] {
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
            // Only the first few hundred bytes can ever be entries (see AuthFileEntry.parse).
            if bytes.count > 1 << 20 { break }
        }
        guard let entries = AuthFileEntry.parse(bytes) else {
            throw LoadError(description: "Authfile [\(path)] has a malformed entry. Should be 'user:password'")
        }
        return entries
    }
}

/// One `user:password` line of a `-Y` file.
struct AuthFileEntry: Equatable {
    var user: [UInt8]
    var password: [UInt8]

    /// At most this many entries are read; the rest of the file is ignored.
    static let maximumEntries = 8
    /// A line is read in pieces of at most this many bytes (255 and a NUL).
    static let pieceLimit = 256

    /// The entries of a file as memcached 1.6.18 reads them, or nil where it
    /// refuses the file as malformed. Its reader has quirks that decide which
    /// passwords work, so they are followed rather than tidied:
    /// - the file is read line by line into one buffer the size of the file,
    ///   each line at most 255 bytes, each line written over the previous
    ///   one's end (its password terminator), so every newline read leaves a
    ///   byte of room: a file that is a single line without a newline loses
    ///   its last byte;
    /// - a piece without a colon before its end (an empty line, say) makes
    ///   the file malformed; the password ends at `\r`, `\n` or a NUL;
    /// - reading stops after a piece that did not end in a newline (the end
    ///   of the file, or a line longer than 255 bytes, whose first 255 bytes
    ///   still count), and after the 8th entry.
    static func parse(_ file: [UInt8]) -> [AuthFileEntry]? {
        var entries: [AuthFileEntry] = []
        var readOffset = 0
        // Where the next piece is written in a buffer of `file.count` bytes.
        var writeOffset = 0
        while true {
            let room = min(file.count - writeOffset, pieceLimit)
            if room <= 0 { break }
            var piece: ArraySlice<UInt8> = []
            if room > 1 {
                if readOffset >= file.count { break }     // end of file: nothing read
                var end = readOffset
                while end < file.count && end - readOffset < room - 1 {
                    end += 1
                    if file[end - 1] == UInt8(ascii: "\n") { break }
                }
                piece = file[readOffset..<end]
                readOffset = end
            }
            // A one-byte room reads nothing, an empty piece: malformed below.
            let bytes = Array(piece) + [0]
            guard let colon = bytes.firstIndex(where: { $0 == UInt8(ascii: ":") || $0 == 0 }), bytes[colon] != 0
            else { return nil }
            let terminators: Set<UInt8> = [UInt8(ascii: "\r"), UInt8(ascii: "\n"), 0]
            let passwordEnd = bytes[(colon + 1)...].firstIndex(where: terminators.contains)!
            entries.append(AuthFileEntry(user: Array(bytes[..<colon]), password: Array(bytes[(colon + 1)..<passwordEnd])))
            if entries.count == maximumEntries || bytes[passwordEnd] == 0 { break }
            writeOffset += passwordEnd
        }
        return entries
    }
}
