import Glibc
import Synchronization

/// Set by SIGINT once `install()` has run; the run then stops early and still reports.
public enum InterruptFlag {
    private static let flag = Atomic<Bool>(false)

    public static var isSet: Bool { flag.load(ordering: .relaxed) }

    public static func install() {
        // Kept out of main.swift: a closure there is main-actor isolated and traps when a signal calls it.
        signal(SIGINT, interruptHandler)
    }

    fileprivate static func set() { flag.store(true, ordering: .relaxed) }
}

private func interruptHandler(_ signal: Int32) {
    InterruptFlag.set()
}
