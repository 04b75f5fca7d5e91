import Concurrency
import Glibc

/// One line per failure (a failed TLS handshake, a refused login), at most
/// one a second: a flood of bad peers is summed up, not echoed line by line.
/// Lines go to standard error unless another sink is given. Thread-safe.
public final class ThrottledLog: Sendable {
    private let sink: @Sendable (String) -> Void

    public init(sink: @escaping @Sendable (String) -> Void = ThrottledLog.standardError) {
        self.sink = sink
    }

    public static let standardError: @Sendable (String) -> Void = { line in
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }

    /// When the last line was written, and how many were not since.
    private let logged = Locked<(at: Int64, unlogged: Int)>((0, 0))

    public func log(_ line: String) {
        let now = monotonicMilliseconds()
        let skipped: Int? = logged.withLock { state in
            if state.at != 0 && now - state.at < 1000 {
                state.unlogged += 1
                return nil
            }
            let skipped = state.unlogged
            state = (now, 0)
            return skipped
        }
        guard let skipped else { return }
        sink(line + (skipped > 0 ? " (and \(skipped) more since the last line)" : ""))
    }
}
