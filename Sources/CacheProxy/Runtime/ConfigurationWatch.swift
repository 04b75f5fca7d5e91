import EventLoop
import Glibc

/// Follows the configuration file: every few hundred milliseconds it looks at
/// the file's identity (inode, size, modification time) and calls `changed`
/// when it differs, so every proxy that reads one shared file (a volume, a
/// config-management run on each host) takes a new node list within a second,
/// with no signal sent to each. Writing a new file and renaming it over the
/// old one, as editors and config tools do, counts as a change; a file missing
/// for a moment (mid-rename) is waited for. Main loop only.
final class ConfigurationWatch {
    private let path: String
    private var timer: EventTimer?
    private var seen: Identity?
    private let changed: () -> Void

    private struct Identity: Equatable {
        let inode: UInt64
        let size: Int64
        let modified: timespec

        static func == (a: Identity, b: Identity) -> Bool {
            a.inode == b.inode && a.size == b.size
                && a.modified.tv_sec == b.modified.tv_sec && a.modified.tv_nsec == b.modified.tv_nsec
        }
    }

    static let intervalMilliseconds = 250

    init(path: String, loop: EventLoop, changed: @escaping () -> Void) {
        self.path = path
        self.changed = changed
        seen = identity()
        let timer = EventTimer(loop: loop, milliseconds: ConfigurationWatch.intervalMilliseconds, repeating: true) {
            [unowned self] in look()
        }
        timer.start()
        self.timer = timer
    }

    deinit { timer?.stop() }

    private func identity() -> Identity? {
        var status = stat()
        guard stat(path, &status) == 0 else { return nil }
        return Identity(inode: UInt64(status.st_ino), size: Int64(status.st_size), modified: status.st_mtim)
    }

    private func look() {
        guard let now = identity(), now != seen else { return }
        seen = now
        changed()
    }
}
