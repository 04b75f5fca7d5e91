import Glibc

/// Writes to fd 1 and 2 directly (the C `stdout`/`stderr` globals are not
/// concurrency-safe in Swift 6).
enum StandardStreams {
    static func writeOutput(_ text: String) { write(fd: STDOUT_FILENO, text) }
    static func writeError(_ text: String) { write(fd: STDERR_FILENO, text) }

    private static func write(fd: Int32, _ text: String) {
        var text = text
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0 && errno == EINTR { continue }
                if written <= 0 { return }
                offset += written
            }
        }
    }
}
