#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import MemcacheProtocol

// Counts the heap allocations the parsers make, with glibc's own tracer: the test
// binary re-runs itself for one probe test with `libc_malloc_debug.so` preloaded and
// `MALLOC_TRACE` set; the probe calls `mtrace()` around its parse loop, and the
// parent counts the allocations in the trace. (Hooking the Swift runtime's
// `_swift_allocObject` slot instead crashes Swift 6.3: compiled code expects that
// entry point to preserve registers a Swift hook cannot.)
//
// The probe parses thousands of requests and responses; a per-request allocation
// would show up thousands of times. A few allocations by the test runner's other
// threads during the window are tolerated.

let mallocDebugLibrary = "/usr/lib/x86_64-linux-gnu/libc_malloc_debug.so.0"
let probeEnvironment = "MEMCACHE_ALLOCATION_PROBE"
let probeRequestRounds = 200
let probeResponseRounds = 200

/// Requests of every kind, errors included, back to back.
let probePipeline: [UInt8] = b(
    "get foo\r\ngets " + (1...40).map { "key\($0)" }.joined(separator: " ") +
    "\r\ngat 10 a b\r\nset k 5 0 3 noreply\r\nabc\r\ncas k 0 0 1 99\r\nx\r\n" +
    "incr k 5\r\ndelete k 0\r\ntouch k 10\r\nflush_all 10\r\nverbosity 1\r\nstats settings\r\nversion\r\n" +
    "mn\r\nmg a2V5 b v f t T30 Oopaque k\r\nms k 2 T5 F3 MA C8 I\r\nxy\r\nmd k q C5\r\nma k N0 J5 D9 MD v\r\n" +
    "me k\r\nGET x\r\nset k abc 0 1\r\nmg k Tabc\r\nms k 2 MX\r\nxy\r\nset k 0 0 3\r\nabcd\r\nget " +
    rep("k", 251) + "\r\nset big 0 0 2000000\r\nmg k\r\n")

let probeReplies: [UInt8] = b(
    "STORED\r\nVALUE rk 5 3 1078\r\nabc\r\nEND\r\nVA 3 f5 t-1 c1078 s3 krk Oxy\r\nabc\r\nHD c1\r\n" +
    "EN\r\nMN\r\nME rk exp=-1 la=0 cas=1079 fetch=no cls=1 size=63\r\nCLIENT_ERROR bad data chunk\r\n" +
    "15\r\nSTAT pid 1\r\nERROR: shutdown not enabled\r\nVERSION 1.6.18\r\n")

/// Parses the whole probe pipeline once; returns the number of outcomes.
func parseProbePipeline(_ parser: RequestParser, _ all: UnsafeRawBufferPointer) -> Int {
    var offset = 0
    var outcomes = 0
    while offset < all.count {
        switch parser.parse(UnsafeRawBufferPointer(rebasing: all[offset...])) {
        case .request(let request): offset += request.length
        case .invalid(_, let consume, let swallow, _): offset += consume + swallow
        case .tooLarge(_, let consume, _): offset += consume   // its data is not in the buffer
        case .needMoreData, .close, .lineTooLong: offset = all.count
        }
        outcomes += 1
    }
    return outcomes
}

func parseProbeReplies(_ parser: ResponseParser, _ all: UnsafeRawBufferPointer) -> Int {
    var offset = 0
    var units = 0
    while offset < all.count, case .response(let response) = parser.parse(UnsafeRawBufferPointer(rebasing: all[offset...])) {
        offset += response.length
        units += 1
    }
    return units
}

@Suite("Allocations")
struct AllocationTests {
    @Test("the probe input covers every outcome kind")
    func probeInput() {
        #expect(probePipeline.withUnsafeBytes { parseProbePipeline(RequestParser(), $0) } == 27)
        #expect(probeReplies.withUnsafeBytes { parseProbeReplies(ResponseParser(), $0) } == 13)
    }

    @Test("parsing allocates nothing (glibc mtrace)",
          .enabled(if: access(mallocDebugLibrary, R_OK) == 0 && getenv(probeEnvironment) == nil))
    func parsingAllocatesNothing() throws {
        let trace = "/tmp/memcache-protocol-mtrace-\(getpid()).txt"
        defer { unlink(trace) }
        let status = try runProbe(trace: trace)
        #expect(status == 0, "probe exited with \(status)")
        let allocations = try countTracedAllocations(trace)
        let parses = probeRequestRounds * 27 + probeResponseRounds * 13
        // Anything per request would be >= `parses`; the runner's own threads add a handful.
        #expect(allocations >= 0 && allocations < 50, "\(allocations) allocations traced over \(parses) parses")
    }

    /// Runs only in the child started by `parsingAllocatesNothing`.
    @Test("allocation probe (child process)", .enabled(if: getenv(probeEnvironment) != nil))
    func allocationProbe() throws {
        typealias Toggle = @convention(c) () -> Void
        typealias VersionedLookup = @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>, UnsafePointer<CChar>) -> UnsafeMutableRawPointer?
        // The tracer's entry points are non-default symbol versions, so plain dlsym finds
        // libc's stubs; dlvsym (a GNU extension the Glibc module does not import) finds them.
        let dlvsymAddress = try #require(dlsym(UnsafeMutableRawPointer(bitPattern: 0), "dlvsym"))
        let dlvsym = unsafeBitCast(dlvsymAddress, to: VersionedLookup.self)
        let start = try #require(dlvsym(UnsafeMutableRawPointer(bitPattern: 0), "mtrace", "GLIBC_2.2.5"))
        let stop = try #require(dlvsym(UnsafeMutableRawPointer(bitPattern: 0), "muntrace", "GLIBC_2.2.5"))
        let requestParser = RequestParser()
        let responseParser = ResponseParser()
        var outcomes = 0
        probePipeline.withUnsafeBytes { pipeline in
            probeReplies.withUnsafeBytes { replies in
                // Warm up: lazily initialized globals are set up before tracing starts.
                outcomes &+= parseProbePipeline(requestParser, pipeline) + parseProbeReplies(responseParser, replies)
                unsafeBitCast(start, to: Toggle.self)()
                for _ in 0..<probeRequestRounds { outcomes &+= parseProbePipeline(requestParser, pipeline) }
                for _ in 0..<probeResponseRounds { outcomes &+= parseProbeReplies(responseParser, replies) }
                unsafeBitCast(stop, to: Toggle.self)()
            }
        }
        #expect(outcomes == (probeRequestRounds + 1) * 27 + (probeResponseRounds + 1) * 13)
    }
}

struct ProbeError: Error, CustomStringConvertible {
    let description: String
}

/// Re-runs this test binary for the probe test with the malloc tracer preloaded.
func runProbe(trace: String) throws -> Int32 {
    var executable = [CChar](repeating: 0, count: 4096)
    let length = readlink("/proc/self/exe", &executable, executable.count - 1)
    guard length > 0 else { throw ProbeError(description: "cannot find the test executable") }
    let path = String(decoding: executable[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    let arguments = [path, "--testing-library", "swift-testing", "--filter", "allocationProbe"]
    var environment: [String] = []
    var entry = environ
    while let pointer = entry.pointee {
        let text = String(cString: pointer)
        if !text.hasPrefix("LD_PRELOAD=") && !text.hasPrefix("MALLOC_TRACE=") { environment.append(text) }
        entry += 1
    }
    environment += ["LD_PRELOAD=\(mallocDebugLibrary)", "MALLOC_TRACE=\(trace)", "\(probeEnvironment)=1",
                    "SWIFT_BACKTRACE=enable=no"]
    var argv = arguments.map { strdup($0) } + [nil]
    var envp = environment.map { strdup($0) } + [nil]
    defer {
        for pointer in argv { free(pointer) }
        for pointer in envp { free(pointer) }
    }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    var child: pid_t = 0
    let spawned = posix_spawn(&child, path, &actions, nil, &argv, &envp)
    guard spawned == 0 else { throw ProbeError(description: "posix_spawn failed: \(spawned)") }
    var status: Int32 = 0
    while waitpid(child, &status, 0) < 0 && errno == EINTR {}
    // WIFEXITED / WEXITSTATUS by hand (macros are not imported).
    return (status & 0x7F) == 0 ? (status >> 8) & 0xFF : -(status & 0x7F)
}

/// Allocation lines of a glibc mtrace file: `@ <caller> + <address> <size>`
/// (realloc appears as `<` then `>`; both kinds are counted as allocations).
func countTracedAllocations(_ path: String) throws -> Int {
    guard let file = fopen(path, "r") else { throw ProbeError(description: "no trace at \(path)") }
    defer { fclose(file) }
    var count = 0
    var line = [CChar](repeating: 0, count: 512)
    while fgets(&line, Int32(line.count), file) != nil {
        let bytes = line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        let text = String(decoding: bytes, as: UTF8.self)
        if text.contains(" + ") || text.contains(" > ") { count += 1 }
    }
    return count
}
