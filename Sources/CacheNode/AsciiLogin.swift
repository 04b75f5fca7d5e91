/// What a `-Y` connection is read with until it has logged in: memcached's
/// own reader for that state, not the request parser, because memcached
/// reads it differently (docs/authentication.md):
/// - a line is `set <anything> <anything> <anything> <size> [anything...]`,
///   split on spaces: only the word `set` and the size count; any other
///   line is refused (`CLIENT_ERROR unauthenticated`), the connection stays;
/// - then `<size>` bytes and `\r\n`, which must be `<user> <password>`
///   (split on spaces again, extra words ignored, nothing after a NUL byte);
/// - more than 2048 bytes without a newline, or a data block that cannot fit
///   in memcached's 16 KB read buffer, end the connection.
struct AsciiLogin {
    /// What one step of reading made of the input.
    enum Outcome: Equatable {
        /// Nothing complete yet.
        case needMore
        /// Refused with this reply; the connection stays unauthenticated.
        case refused(Refusal)
        /// The user and password matched (`STORED`).
        case loggedIn
        /// The connection is to be closed.
        case close
    }

    enum Refusal: Equatable {
        case unauthenticated, badTermination, badTokenFormat, authenticationFailure

        var reply: StaticString {
            switch self {
            case .unauthenticated: "CLIENT_ERROR unauthenticated\r\n"
            case .badTermination: "CLIENT_ERROR bad command line termination\r\n"
            case .badTokenFormat: "CLIENT_ERROR bad authentication token format\r\n"
            case .authenticationFailure: "CLIENT_ERROR authentication failure\r\n"
            }
        }
    }

    /// memcached waits for this many bytes before it looks at a line.
    static let shortestLine = 2
    /// Bytes without a newline after which memcached closes.
    static let longestLine = 2048
    /// memcached's read buffer: a data block (with its `\r\n`) larger than
    /// this never fits, and memcached closes once the buffer is full.
    static let readBuffer = 16384

    /// Set once a `set` line was read: the data block's length with its `\r\n`.
    private var blockLength: Int?
    /// The user of the last login refused, for the log: printable ASCII
    /// only, at most 64 bytes (a client's bytes), never the password.
    private(set) var lastUser = ""

    /// Reads at most one line or one data block from the start of `input`;
    /// `consumed` is how many bytes that took. `check` is asked whether a
    /// user and password may log in.
    mutating func step(_ input: UnsafeRawBufferPointer, consumed: inout Int,
                       check: (_ user: UnsafeRawBufferPointer, _ password: UnsafeRawBufferPointer) -> Bool) -> Outcome {
        consumed = 0
        if blockLength == nil {
            let outcome = readLine(input, consumed: &consumed)
            guard outcome == .needMore, blockLength != nil else { return outcome }
        }
        var used = 0
        let outcome = readBlock(UnsafeRawBufferPointer(rebasing: input[consumed...]), consumed: &used, check: check)
        consumed += used
        return outcome
    }

    private mutating func readBlock(_ input: UnsafeRawBufferPointer, consumed: inout Int,
                                    check: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Bool) -> Outcome {
        guard let blockLength else { return .needMore }
        guard input.count >= blockLength else {
            return blockLength > AsciiLogin.readBuffer && input.count >= AsciiLogin.readBuffer ? .close : .needMore
        }
        self.blockLength = nil
        consumed = blockLength
        guard input[blockLength - 2] == UInt8(ascii: "\r"), input[blockLength - 1] == UInt8(ascii: "\n")
        else { return .refused(.badTermination) }
        var payload = UnsafeRawBufferPointer(rebasing: input[..<(blockLength - 2)])
        if let nul = payload.firstIndex(of: 0) { payload = UnsafeRawBufferPointer(rebasing: payload[..<nul]) }
        let words = AsciiLogin.words(payload, limit: 2)
        guard words.count == 2 else { return .refused(.badTokenFormat) }
        let user = UnsafeRawBufferPointer(rebasing: payload[words[0]])
        if check(user, UnsafeRawBufferPointer(rebasing: payload[words[1]])) { return .loggedIn }
        lastUser = String(decoding: user.prefix(64).map { $0 >= 0x21 && $0 < 0x7f ? $0 : UInt8(ascii: "?") }, as: UTF8.self)
        return .refused(.authenticationFailure)
    }

    private mutating func readLine(_ input: UnsafeRawBufferPointer, consumed: inout Int) -> Outcome {
        guard input.count >= AsciiLogin.shortestLine else { return .needMore }
        guard let newline = input.firstIndex(of: UInt8(ascii: "\n")) else {
            return input.count > AsciiLogin.longestLine ? .close : .needMore
        }
        consumed = newline + 1
        // The `\r` stays in the last word, where the size's reading stops at
        // it; memcached reads the line as a C string, so a NUL ends it.
        var line = UnsafeRawBufferPointer(rebasing: input[..<newline])
        if let nul = line.firstIndex(of: 0) { line = UnsafeRawBufferPointer(rebasing: line[..<nul]) }
        let words = AsciiLogin.words(line, limit: 5)
        guard words.count == 5, line[words[0]].elementsEqual("set".utf8),
              let size = AsciiLogin.size(line[words[4]])
        else { return .refused(.unauthenticated) }
        blockLength = size + 2
        return .needMore
    }

    /// The first `limit` space-separated words (spaces only, as memcached).
    static func words(_ bytes: UnsafeRawBufferPointer, limit: Int) -> [Range<Int>] {
        var words: [Range<Int>] = []
        var start: Int? = nil
        for index in 0...bytes.count {
            if words.count == limit { break }
            let isSpace = index == bytes.count || bytes[index] == UInt8(ascii: " ")
            if isSpace, let wordStart = start {
                words.append(wordStart..<index)
                start = nil
            } else if !isSpace && start == nil {
                start = index
            }
        }
        return words
    }

    /// The data size as memcached reads it (`strtoul` then a check): leading
    /// blanks and a `+` allowed, digits, then the end or a blank (the `\r`);
    /// no minus sign unless the value is 0. Sizes of 2^32 and more, which
    /// memcached wraps into a small number, are refused here.
    static func size(_ word: Slice<UnsafeRawBufferPointer>) -> Int? {
        var bytes = word[...]
        while let first = bytes.first, isBlank(first) { bytes = bytes.dropFirst() }
        var negative = false
        if let sign = bytes.first, sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") {
            negative = sign == UInt8(ascii: "-")
            bytes = bytes.dropFirst()
        }
        var value = 0
        var digits = 0
        while let digit = bytes.first, digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "9") {
            value = value * 10 + Int(digit - UInt8(ascii: "0"))
            digits += 1
            if value > Int(UInt32.max) { return nil }
            bytes = bytes.dropFirst()
        }
        guard digits > 0, bytes.first.map(isBlank) ?? true, !negative || value == 0 else { return nil }
        return value
    }

    private static func isBlank(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || (byte >= 9 && byte <= 13)
    }
}
