import Logging
import Synchronization

/// The proxy's log: structured lines on standard error at the level of
/// `log_level` (or `--log-level`), which a reload changes for every logger at
/// once. Logging is never per request; `debug` adds detail on membership,
/// health and rebalance events.
public enum ProxyLogging {
    private static let level = Atomic<Int>(Logger.Level.info.index)

    /// Installs the handler; once per process, before the first logger.
    public static func bootstrap(level: Logger.Level) {
        set(level)
        LoggingSystem.bootstrap { label in LevelledHandler(base: StreamLogHandler.standardError(label: label)) }
    }

    /// The level every logger uses from now on.
    public static func set(_ level: Logger.Level) {
        self.level.store(level.index, ordering: .relaxed)
    }

    static var current: Logger.Level { Logger.Level.allCases[level.load(ordering: .relaxed)] }

    /// `StreamLogHandler` with the shared, changeable level.
    private struct LevelledHandler: LogHandler {
        var base: StreamLogHandler

        var logLevel: Logger.Level {
            get { ProxyLogging.current }
            set {}   // one level for the whole process: `ProxyLogging.set`
        }

        var metadata: Logger.Metadata {
            get { base.metadata }
            set { base.metadata = newValue }
        }

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { base[metadataKey: key] }
            set { base[metadataKey: key] = newValue }
        }

        func log(event: LogEvent) {
            base.log(event: event)
        }
    }
}

extension Logger.Level {
    fileprivate var index: Int { Logger.Level.allCases.firstIndex(of: self) ?? 2 }
}
