/// An HTTP request head as the admin endpoint accepts it (RFC 9112, strictly,
/// except that bare LF line ends are taken as CRLF):
///
///   head         = request-line *( field-line ) empty-line
///   request-line = method SP target SP ( "HTTP/1.0" / "HTTP/1.1" )
///   field-line   = name ":" *blank value *blank     ; name = token, no blank before ":"
///
/// Refused: a head over the limit (431); a version other than 1.0 and 1.1
/// (505); a malformed line, a folded field (a line starting with a blank),
/// control characters, a field that may appear once appearing twice, HTTP/1.1
/// without Host, a Host that is not host[:port], a Content-Length that is not
/// a number (400).
struct AdminRequestHead {
    let method: String
    let target: String
    let version: String
    /// Fields in arrival order, names lowercased, values without surrounding blanks.
    let fields: [(name: String, value: String)]

    func value(_ name: String) -> String? { fields.first { $0.name == name }?.value }

    /// Whether a body follows the head (which this endpoint never reads).
    var declaresBody: Bool {
        value("transfer-encoding") != nil || (value("content-length").map { $0.contains { $0 != "0" } } ?? false)
    }

    enum Outcome {
        /// More bytes are needed; nothing wrong so far.
        case incomplete
        case complete(AdminRequestHead)
        case refused(AdminResponse)
    }

    /// Fields whose repetition would make the request ambiguous (which Host?
    /// which Origin?), so a second one is refused rather than guessed at.
    static let singleFields: Set<String> = [
        "host", "origin", "authorization", "content-length", "content-type", "sec-fetch-site", "transfer-encoding",
    ]

    /// Parses the start of `bytes`. A request line is judged as soon as it is
    /// complete, so a client speaking something else (memcached's protocol on
    /// the wrong port) is answered at once instead of at the head timeout.
    static func parse(_ bytes: UnsafeRawBufferPointer, limit: Int) -> Outcome {
        var lines: [Range<Int>] = []
        var lineStart = 0
        var complete = false
        for index in 0..<min(bytes.count, limit) where bytes[index] == UInt8(ascii: "\n") {
            var lineEnd = index
            if lineEnd > lineStart && bytes[lineEnd - 1] == UInt8(ascii: "\r") { lineEnd -= 1 }
            if lineEnd == lineStart && !lines.isEmpty {
                complete = true
                break
            }
            lines.append(lineStart..<lineEnd)
            lineStart = index + 1
        }
        guard let first = lines.first else {
            return bytes.count >= limit ? .refused(.headTooLarge) : .incomplete
        }
        let requestLine: (method: String, target: String, version: String)
        switch parseRequestLine(UnsafeRawBufferPointer(rebasing: bytes[first])) {
        case .success(let parsed): requestLine = parsed
        case .failure(let refusal): return .refused(refusal.response)
        }
        guard complete else { return bytes.count >= limit ? .refused(.headTooLarge) : .incomplete }

        var fields: [(name: String, value: String)] = []
        for range in lines.dropFirst() {
            guard let field = parseField(UnsafeRawBufferPointer(rebasing: bytes[range])) else {
                return .refused(.badRequest("malformed header line"))
            }
            if singleFields.contains(field.name) && fields.contains(where: { $0.name == field.name }) {
                return .refused(.badRequest("more than one \(field.name) header"))
            }
            fields.append(field)
        }
        let head = AdminRequestHead(method: requestLine.method, target: requestLine.target,
                                    version: requestLine.version, fields: fields)
        if let host = head.value("host") {
            guard HostPort(parsing: host, defaultPort: 80) != nil else { return .refused(.badRequest("malformed Host header")) }
        } else if head.version == "HTTP/1.1" {
            return .refused(.badRequest("HTTP/1.1 request without Host"))
        }
        if let length = head.value("content-length"), length.isEmpty || !length.allSatisfy({ $0.isASCII && $0.isNumber }) {
            return .refused(.badRequest("malformed Content-Length header"))
        }
        return .complete(head)
    }

    private struct Refusal: Error {
        let response: AdminResponse
    }

    private static func parseRequestLine(_ line: UnsafeRawBufferPointer) -> Result<(method: String, target: String, version: String), Refusal> {
        let parts = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, parts[0].allSatisfy(isTokenCharacter),
              !parts[1].isEmpty, parts[1].allSatisfy({ (0x21...0x7E).contains($0) }) else {
            return .failure(Refusal(response: .badRequest("malformed request line")))
        }
        let version = String(decoding: parts[2], as: UTF8.self)
        guard version == "HTTP/1.0" || version == "HTTP/1.1" else {
            let wellFormed = parts[2].count == 8 && version.hasPrefix("HTTP/")
                && version.utf8.enumerated().dropFirst(5).allSatisfy { offset, byte in
                    offset == 6 ? byte == UInt8(ascii: ".") : (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                }
            return .failure(Refusal(response: wellFormed ? .versionNotSupported : .badRequest("malformed request line")))
        }
        return .success((String(decoding: parts[0], as: UTF8.self), String(decoding: parts[1], as: UTF8.self), version))
    }

    private static func parseField(_ line: UnsafeRawBufferPointer) -> (name: String, value: String)? {
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > 0,
              line[..<colon].allSatisfy(isTokenCharacter) else { return nil }
        var value = line[(colon + 1)...]
        while let byte = value.first, isBlank(byte) { value = value.dropFirst() }
        while let byte = value.last, isBlank(byte) { value = value.dropLast() }
        // Visible ASCII, blanks and obs-text; no control characters (a bare CR, NUL, DEL).
        guard value.allSatisfy({ isBlank($0) || (0x20...0x7E).contains($0) || $0 >= 0x80 }) else { return nil }
        return (String(decoding: line[..<colon], as: UTF8.self).lowercased(), String(decoding: value, as: UTF8.self))
    }

    private static func isBlank(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 }

    /// RFC 9110's tchar.
    private static func isTokenCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }
}
