import Glibc

/// The `memcluster-node` program: flags -> settings -> bound sockets -> run.
public enum NodeMain {
    /// Runs the node and returns the process exit status.
    public static func run(arguments: [String]) -> Int32 {
        let settings: NodeSettings
        switch NodeFlags.parse(arguments) {
        case .printAndExit(let text):
            print(text)
            return 0
        case .fail(let message):
            printError(message)
            return 64  // EX_USAGE, as memcached
        case .run(let parsed, let warnings):
            for warning in warnings { printError(warning) }
            settings = parsed
        }

        do {
            let server = try NodeServer(settings: settings)
            try server.bind()
            if settings.daemonize {
                guard daemon(1, 0) == 0 else {
                    printError("failed to daemonize: \(String(cString: strerror(errno)))")
                    return 71
                }
            }
            if let pidFile = settings.pidFile { writePidFile(pidFile) }
            if let failure = dropPrivileges(to: settings.user) {
                printError(failure)
                return 71
            }
            if settings.verbosity > 0 || settings.port == 0 {
                printError("memcluster-node \(NodeFlags.version) listening on \(settings.listenAddresses.joined(separator: ",")) port \(server.boundPort), \(settings.threads == 1 ? "1 thread" : "\(settings.threads) threads"), \(settings.memoryLimit >> 20) MB")
            }
            try server.run()
            if let pidFile = settings.pidFile { unlink(pidFile) }
            return 0
        } catch {
            printError("failed to start: \(error)")
            return 71  // EX_OSERR
        }
    }

    static func printError(_ message: String) {
        var line = message + "\n"
        line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    }

    static func writePidFile(_ path: String) {
        guard let file = fopen(path, "w") else {
            printError("Could not open the pid file \(path) for writing: \(String(cString: strerror(errno)))")
            return
        }
        fputs("\(getpid())\n", file)
        fclose(file)
    }

    /// `-u user`: when started as root, switch to that user (memcached insists on
    /// -u when run as root; the node does not, but honours it when given).
    static func dropPrivileges(to user: String?) -> String? {
        guard let user, getuid() == 0 || geteuid() == 0 else { return nil }
        guard let entry = getpwnam(user) else { return "can't find the user \(user) to switch to" }
        if setgroups(0, nil) != 0 && errno != EPERM { return "failed to drop supplementary groups" }
        if setgid(entry.pointee.pw_gid) != 0 || setuid(entry.pointee.pw_uid) != 0 {
            return "failed to assume identity of user \(user)"
        }
        return nil
    }
}
