import ArgumentParser
import CacheProxy
import Glibc
import MemcacheProtocol

/// The operator's command: what every proxy says of the membership, and
/// changes to the node list the proxies follow (their shared YAML file).
struct AdminCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "memcluster-admin",
        abstract: "See and change the membership memcluster proxies follow.",
        version: "memcluster-admin \(MemclusterVersion.release)",
        subcommands: [Status.self, Add.self, Remove.self, Rebalance.self]
    )
}

/// The proxies to ask, and how long to wait for them.
struct ProxyOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("A proxy's client address (repeatable; default 127.0.0.1:22121).",
                                            valueName: "host:port"))
    var proxy: [String] = []

    @Option(name: .long, help: ArgumentHelp("Seconds to wait for the proxies. (default: 2 for status, 30 with --wait)",
                                            valueName: "s"))
    var timeout: Int?

    func addresses() throws -> [HostPort] {
        let given = proxy.isEmpty ? ["127.0.0.1:22121"] : proxy
        return try given.map { text in
            guard let address = HostPort(parsing: text) else { throw ValidationError("--proxy \(text): not host:port") }
            return address
        }
    }
}

/// The file an edit changes, and whether to wait for the proxies to take it.
struct FileOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The proxies' YAML file.", valueName: "file"))
    var config: String

    @Flag(name: .long, help: "Wait until every --proxy is on one new generation.")
    var wait = false
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show each proxy's membership generation, change phase and nodes; exit 1 unless all answer and agree.")

    @OptionGroup var proxies: ProxyOptions

    func run() throws {
        let statuses = try ProxyStatus.gather(proxies.addresses(), timeoutMilliseconds: (proxies.timeout ?? 2) * 1000)
        let (text, agree) = ProxyStatus.report(statuses)
        print(text)
        if !agree { throw ExitCode(1) }
    }
}

struct Add: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Add a node to the configuration file the proxies follow.",
        discussion: "The file is edited in place (its comments kept) and checked by parsing it; proxies with watch_config pick it up within a second.")

    @Argument(help: ArgumentHelp("The node, as the file writes one.", valueName: "host:port[:weight] [name]"))
    var node: String

    @OptionGroup var file: FileOptions
    @OptionGroup var proxies: ProxyOptions

    func run() throws {
        try edit(file, proxies: proxies) { text in try NodeListEdit.adding(node, to: text) }
    }
}

struct Remove: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove (drain) a node from the configuration file the proxies follow.",
        discussion: """
        The change drains the node: its keys are copied to their next owners while the change runs \
        (with rebalance: true). Stop the node only once every proxy's change is over (status shows \
        stable): until then proxies still read it for keys they have not copied yet.
        """,
        aliases: ["drain"])

    @Argument(help: ArgumentHelp("The node's address, as in the file.", valueName: "host:port"))
    var node: String

    @OptionGroup var file: FileOptions
    @OptionGroup var proxies: ProxyOptions

    func run() throws {
        guard let address = HostPort(parsing: node) else { throw ValidationError("\(node): not host:port") }
        try edit(file, proxies: proxies) { text in try NodeListEdit.removing(address, from: text) }
    }
}

struct Rebalance: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start a repair pass on a proxy: every member's keys copied to their owners missing them, orphans deleted.",
        discussion: """
        Asks the proxy's admin endpoint (its metrics_listen address), POST /rebalance. One proxy is enough: \
        the copies are adds. Progress: memcluster-admin status, or proxy_rebalance_* in stats. Refused while \
        a membership change or another pass is under way.
        """)

    @Option(name: .long, help: ArgumentHelp("The proxy's admin endpoint (metrics_listen).", valueName: "host:port"))
    var admin: String

    @Option(name: .long, help: ArgumentHelp("A file holding the proxy's admin token.", valueName: "file"))
    var tokenFile: String?

    func run() throws {
        guard let endpoint = HostPort(adminAddress: admin) else { throw ValidationError("--admin \(admin): not host:port") }
        var token: AdminToken?
        if let tokenFile {
            do { token = try AdminToken.read(file: tokenFile) } catch {
                printError("memcluster-admin: \(error)")
                throw ExitCode(1)
            }
        }
        switch AdminPost.send("/rebalance", to: endpoint, token: token) {
        case .success(let answer) where answer.status == 200:
            print(answer.body, terminator: "")
        case .success(let answer):
            printError("memcluster-admin: \(endpoint) refused (\(answer.status)): \(answer.body.trimmingCharacters(in: .whitespacesAndNewlines))")
            throw ExitCode(1)
        case .failure(let failure):
            printError("memcluster-admin: \(endpoint): \(failure)")
            throw ExitCode(1)
        }
    }
}

/// Rewrites `path` with `change`, atomically and keeping its mode; with
/// `wait`, then waits for the proxies to agree on a generation other than
/// the one they were on.
func edit(_ file: FileOptions, proxies: ProxyOptions, _ change: (String) throws -> String) throws {
    let (path, wait) = (file.config, file.wait)
    let addresses = try proxies.addresses()
    let before = wait ? Set(try ProxyStatus.gather(addresses).compactMap(\.generation)) : []
    do {
        let text = try ConfigurationFile.contents(of: path)
        try replaceFile(path, with: try change(text))
    } catch let error as ConfigurationError {
        printError("memcluster-admin: \(path): \(error)")
        throw ExitCode(1)
    }
    print("\(path) updated")
    guard wait else { return }
    let deadline = time(nil) + (proxies.timeout ?? 30)
    while true {
        let statuses = try ProxyStatus.gather(addresses)
        let (text, agree) = ProxyStatus.report(statuses)
        if agree, let generation = statuses.first?.generation, !before.contains(generation) {
            print(text)
            return
        }
        if time(nil) >= deadline {
            print(text)
            printError("memcluster-admin: the proxies did not all take the change within \(proxies.timeout ?? 30) s")
            throw ExitCode(1)
        }
        usleep(200_000)
    }
}

/// Writes `text` to a temporary file beside `path` with `path`'s mode, then
/// renames it over `path`, so a proxy never reads half a file.
func replaceFile(_ path: String, with text: String) throws {
    var info = stat()
    let mode = stat(path, &info) == 0 ? info.st_mode & 0o7777 : 0o644
    let temporary = path + ".memcluster-admin.tmp"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, mode)
    guard fd >= 0 else { throw failure("cannot write \(temporary)") }
    let bytes = Array(text.utf8)
    let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    let synced = fsync(fd) == 0
    close(fd)
    guard written == bytes.count, synced, rename(temporary, path) == 0 else {
        unlink(temporary)
        throw failure("cannot replace \(path)")
    }
}

func failure(_ message: String) -> Error {
    printError("memcluster-admin: \(message): \(String(cString: strerror(errno)))")
    return ExitCode(1)
}

/// One line on standard error (`write(2)`: the C `stderr` global is not
/// concurrency-safe in Swift 6).
func printError(_ message: String) {
    let line = Array((message + "\n").utf8)
    _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

AdminCommand.main()
