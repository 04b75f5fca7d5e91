/// `--value-size N` or `--value-size MIN-MAX` (bytes).
public struct ValueSizeRange: Sendable, Equatable, Codable, CustomStringConvertible {
    public let minimum: Int
    public let maximum: Int

    /// Largest value accepted; memcached itself defaults to 1 MiB items (-I).
    public static let limit = 64 * 1024 * 1024

    public init(minimum: Int, maximum: Int) throws(ConfigurationError) {
        guard minimum >= 0 else { throw ConfigurationError("--value-size must not be negative") }
        guard minimum <= maximum else {
            throw ConfigurationError("--value-size \(minimum)-\(maximum): the minimum is larger than the maximum")
        }
        guard maximum <= ValueSizeRange.limit else {
            throw ConfigurationError("--value-size \(maximum) exceeds the limit of \(ValueSizeRange.limit) bytes")
        }
        self.minimum = minimum
        self.maximum = maximum
    }

    public init(parsing text: String) throws(ConfigurationError) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        func number(_ part: Substring) throws(ConfigurationError) -> Int {
            guard let value = Int(part) else {
                throw ConfigurationError("--value-size '\(text)' is not N or MIN-MAX (bytes)")
            }
            return value
        }
        switch parts.count {
        case 1:
            let size = try number(parts[0])
            try self.init(minimum: size, maximum: size)
        case 2:
            try self.init(minimum: try number(parts[0]), maximum: try number(parts[1]))
        default:
            throw ConfigurationError("--value-size '\(text)' is not N or MIN-MAX (bytes)")
        }
    }

    public var description: String { minimum == maximum ? "\(minimum)" : "\(minimum)-\(maximum)" }
}

/// `--ratio SETS:GETS`, as memtier: 1:9 sends one set for every nine gets.
public struct OperationRatio: Sendable, Equatable, Codable, CustomStringConvertible {
    public let sets: Int
    public let gets: Int

    public init(sets: Int, gets: Int) throws(ConfigurationError) {
        guard sets >= 0, gets >= 0 else { throw ConfigurationError("--ratio parts must not be negative") }
        guard sets + gets > 0 else { throw ConfigurationError("--ratio 0:0 sends nothing; give at least one set or get") }
        guard sets + gets <= 1_000_000 else { throw ConfigurationError("--ratio parts must add up to at most 1000000") }
        self.sets = sets
        self.gets = gets
    }

    public init(parsing text: String) throws(ConfigurationError) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let sets = Int(parts[0]), let gets = Int(parts[1]) else {
            throw ConfigurationError("--ratio '\(text)' is not SETS:GETS (e.g. 1:9)")
        }
        try self.init(sets: sets, gets: gets)
    }

    /// Position `p` of the repeating cycle (sets first) is a set.
    @inline(__always)
    public func isSet(at position: Int) -> Bool { position < sets }

    public var cycleLength: Int { sets + gets }
    public var description: String { "\(sets):\(gets)" }
}

/// `--protocol`.
public enum WireProtocol: String, CaseIterable, Sendable, Codable {
    /// `get k1 k2 ...` / `set k 0 0 n`.
    case text
    /// `mg k v` / `ms k n` (a multi-get is quiet `mg k v q` lines closed by `mn`).
    case meta
}

/// How long the measured phase lasts.
public enum RunBound: Sendable, Equatable {
    case duration(seconds: Double)
    /// Requests across all threads (after any warm-up).
    case requests(UInt64)
}
