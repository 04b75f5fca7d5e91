import Foundation
import Testing

/// What Tests/integration/record_corpus.py recorded: every corpus case, the
/// bytes it sends, and memcached 1.6.18's reply.
enum CorpusFixture {
    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    struct Case: Sendable, CustomTestStringConvertible {
        let name: String
        let flags: [String]
        let split: Split
        let sentinel: Bool
        let norms: [String]
        let differs: Bool
        let target: [UInt8]
        let segments: [Segment]
        let reply: [UInt8]
        let closed: Bool
        let exits: Bool
        var testDescription: String { name }
    }

    struct Segment: Sendable {
        let lines: [[UInt8]]
        let wait: Double
    }

    /// How the corpus runner cut the bytes into sends.
    enum Split: Sendable {
        case whole, lines
        case every(Int)
        case at([Int])
    }

    /// Cases not replayed here, and why; the integration suite runs them
    /// against the real binary.
    static let notReplayed: [String: String] = Dictionary(uniqueKeysWithValues: cases.compactMap { recorded in
        if recorded.exits { return (recorded.name, "shuts the process down") }
        if recorded.flags.contains("-t") { return (recorded.name, "about worker threads") }
        return nil
    })

    static let cases: [Case] = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures").appendingPathComponent("memcached-corpus.json")
        guard let data = try? Data(contentsOf: url),
              let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let list = root["cases"] as? [[String: Any]] else { return [] }
        return list.map(decodeCase)
    }()

    private static func decodeCase(_ json: [String: Any]) -> Case {
        let split: Split
        switch json["split"] {
        case let text as String where text == "lines": split = .lines
        case let size as Int: split = .every(size)
        case let offsets as [Int]: split = .at(offsets)
        default: split = .whole
        }
        let segments = (json["segments"] as? [[String: Any]] ?? []).map { segment in
            Segment(lines: (segment["lines"] as? [[[String: Any]]] ?? []).map(decodePieces),
                    wait: (segment["wait"] as? Double) ?? Double(segment["wait"] as? Int ?? 0))
        }
        return Case(name: json["name"] as? String ?? "?", flags: json["flags"] as? [String] ?? [], split: split,
                    sentinel: json["sentinel"] as? Bool ?? true, norms: json["norms"] as? [String] ?? [],
                    differs: json["differs"] as? Bool ?? false,
                    target: Array(Data(base64Encoded: json["target"] as? String ?? "") ?? Data()),
                    segments: segments, reply: decodePieces(json["reply"] as? [[String: Any]] ?? []),
                    closed: json["closed"] as? Bool ?? false, exits: json["exits"] as? Bool ?? false)
    }

    /// Pieces: {"b": base64}, {"r": byte, "n": count}, {"blob": n, "seed": s}.
    private static func decodePieces(_ pieces: [[String: Any]]) -> [UInt8] {
        var out: [UInt8] = []
        for piece in pieces {
            if let text = piece["b"] as? String {
                out += Array(Data(base64Encoded: text) ?? Data())
            } else if let byte = piece["r"] as? Int, let count = piece["n"] as? Int {
                out += Array(repeating: UInt8(byte), count: count)
            } else if let count = piece["blob"] as? Int, let seed = piece["seed"] as? Int {
                out += blob(count, seed: seed)
            }
        }
        return out
    }

    /// corpus.py's `blob(n, seed)`: xorshift32 bytes.
    static func blob(_ count: Int, seed: Int) -> [UInt8] {
        var x = UInt32(truncatingIfNeeded: seed)
        if x == 0 { x = 1 }
        var out = [UInt8]()
        out.reserveCapacity(count)
        for _ in 0..<count {
            x ^= x << 13
            x ^= x >> 17
            x ^= x << 5
            out.append(UInt8(truncatingIfNeeded: x))
        }
        return out
    }

    static func chunks(_ lines: [[UInt8]], split: Split) -> [[UInt8]] {
        let all = lines.flatMap { $0 }
        switch split {
        case .whole: return [all]
        case .lines: return lines
        case .every(let size):
            return stride(from: 0, to: all.count, by: size).map { Array(all[$0..<min($0 + size, all.count)]) }
        case .at(let offsets):
            var out: [[UInt8]] = []
            var start = 0
            for offset in offsets where offset > start && offset < all.count {
                out.append(Array(all[start..<offset]))
                start = offset
            }
            out.append(Array(all[start...]))
            return out
        }
    }

    // MARK: Comparison, as corpus.py compares

    private static let rules: [String: [(String, String)]] = [
        "version": [("(?m)^VERSION [^\\r\\n]*\\r\\n", "VERSION <v>\r\n")],
        "stat-lines": [("(?m)(?:^STAT [^\\r\\n]*\\r\\n)+", "STAT <lines>\r\n")],
        "me-times": [("(?m)^(ME \\S+ .*)\\bla=\\d+", "$1la=<s>"), ("(?m)^(ME \\S+ .*)\\bexp=\\d+", "$1exp=<s>")],
    ]

    static func normalize(_ bytes: [UInt8], _ norms: [String]) -> [UInt8] {
        var text = String(decoding: norms.contains("metadump") ? normalizeMetadump(bytes) : bytes, as: UTF8.self)
        for name in ["version"] + norms {
            for (pattern, template) in rules[name] ?? [] {
                let regex = try! NSRegularExpression(pattern: pattern)
                var previous = ""
                while previous != text {
                    previous = text
                    text = regex.stringByReplacingMatches(in: text, range: NSRange(text.startIndex..., in: text),
                                                          withTemplate: template)
                }
            }
        }
        return Array(text.utf8)
    }

    private static let metadumpLine = try! NSRegularExpression(
        pattern: "^key=(\\S+) exp=(-?\\d+) la=(\\d+) (cas=\\d+ fetch=(?:yes|no) cls=\\d+ size=\\d+)\\z")

    /// corpus.py's `metadump`: each run of metadump lines sorted, `la=`
    /// masked, `exp=` rewritten as `exp-la=<seconds>` (-1 kept).
    static func normalizeMetadump(_ bytes: [UInt8]) -> [UInt8] {
        let lines = lines(bytes)
        var out: [String] = []
        var run: [String] = []
        for (index, line) in lines.enumerated() {
            let range = NSRange(line.startIndex..., in: line)
            // The last piece has no `\n` after it: not a whole line.
            if index < lines.count - 1, let match = metadumpLine.firstMatch(in: line, range: range) {
                let field = { (group: Int) in String(line[Range(match.range(at: group), in: line)!]) }
                let exp = field(2)
                let ttl = exp == "-1" ? "exp=-1" : "exp-la=\(Int(exp)! - Int(field(3))!)"
                run.append("key=\(field(1)) \(ttl) la=<t> \(field(4))")
                continue
            }
            out += run.sorted()
            run.removeAll()
            out.append(line)
        }
        return Array(out.joined(separator: "\n").utf8)
    }

    /// The pieces between `\n` bytes, each with its `\r` if it had one
    /// (String would keep `\r\n` together as one character).
    private static func lines(_ bytes: [UInt8]) -> [String] {
        bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Equal, except that meta TTL and age numbers (`t` and `l` flags, `me`'s
    /// `exp=` and `la=`, a normalized metadump line's `exp-la=`) may differ by
    /// one clock tick, as in corpus.py (-1 must match exactly).
    static func sameWithinATick(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        if a == b { return true }
        let left = lines(a), right = lines(b)
        guard left.count == right.count else { return false }
        for (x, y) in zip(left, right) where x != y {
            guard x.hasSuffix("\r") == y.hasSuffix("\r") else { return false }
            let cut = x.hasSuffix("\r") ? 1 : 0
            let xs = x.dropLast(cut).split(separator: " "), ys = y.dropLast(cut).split(separator: " ")
            guard xs.count == ys.count, let head = xs.first,
                  ["VA", "HD", "EN", "ME"].contains(head) || head.hasPrefix("key=") else { return false }
            for (p, q) in zip(xs, ys) where p != q {
                guard let prefix = ["t", "l", "exp=", "la=", "exp-la="].first(where: {
                          p.hasPrefix($0) && q.hasPrefix($0) && Int(p.dropFirst($0.count)) != nil && Int(q.dropFirst($0.count)) != nil
                      }),
                      let m = Int(p.dropFirst(prefix.count)), let n = Int(q.dropFirst(prefix.count)),
                      m >= 0, n >= 0, abs(m - n) <= 1 else { return false }
            }
        }
        return true
    }

    static func show(_ bytes: [UInt8]) -> String {
        let text = String(decoding: bytes.prefix(4000), as: UTF8.self)
        return text.replacingOccurrences(of: "\r\n", with: "\\r\\n\n")
    }
}
