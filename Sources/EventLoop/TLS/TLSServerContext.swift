import COpenSSL
import Concurrency
import Glibc

/// What a TLS listener serves with, as memcached's `-Z -o ssl_*` options
/// name it. Paths are read when the context is built and again on reload.
public struct TLSServerSettings: Sendable, Equatable {
    public var chainCertificate: String?
    public var privateKey: String?
    /// CA certificates (PEM) that client certificates are checked against.
    public var caCertificate: String?
    /// memcached's `ssl_verify_mode`: 0 none, 1 ask for a client certificate,
    /// 2 require one, 3 require one on the first handshake only.
    public var verifyMode = 0
    public var ciphers: String?
    /// memcached's `ssl_min_version`: 0 TLS 1.0 ... 3 TLS 1.3.
    public var minimumVersion = 2
    /// Free a connection's TLS buffers (~34 KB) whenever they are empty, as
    /// memcached does: a node may hold thousands of idle connections. The
    /// proxy, with fewer and busier ones, keeps them and allocates nothing
    /// per request.
    public var releaseIdleBuffers = true

    public init() {}
}

/// Why a TLS context could not be built, worded as memcached words it.
public struct TLSError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The server side's OpenSSL context: certificate, key and verification, held
/// once for every connection. `reload()` (memcached's `refresh_certs`) builds
/// a new one from the same files and swaps it in: connections accepted later
/// use it, those already open keep theirs. Thread-safe.
public final class TLSServerContext: TLSFailureLog, @unchecked Sendable {
    public let settings: TLSServerSettings
    private let slot: SSLContextSlot
    /// When the certificates were last loaded (monotonic ms).
    private let loaded = Locked<Int64>(0)
    /// Handshakes that failed (a plain-text client, a wrong certificate, ...).
    public let handshakeErrors = Locked<UInt64>(0)

    public init(settings: TLSServerSettings) throws(TLSError) {
        self.settings = settings
        slot = SSLContextSlot(try TLSServerContext.build(settings))
        loaded.withLock { $0 = monotonicMilliseconds() }
    }

    /// Reads the certificate files again; the running context stays on failure.
    public func reload() throws(TLSError) {
        slot.replace(with: try TLSServerContext.build(settings))
        loaded.withLock { $0 = monotonicMilliseconds() }
    }

    public var secondsSinceLoad: Int64 { (monotonicMilliseconds() - loaded.withLock { $0 }) / 1000 }

    /// A new server-side session on socket `fd`, or nil.
    func newSession(fd: Int32) -> OpaquePointer? {
        let ssl = slot.newSession()
        guard let ssl else { return nil }
        guard SSL_set_fd(ssl, fd) == 1 else {
            SSL_free(ssl)
            return nil
        }
        memcluster_ssl_set_modes(ssl, settings.releaseIdleBuffers ? 1 : 0)
        SSL_set_accept_state(ssl)
        return ssl
    }

    private let failures = ThrottledLog()
    func countHandshakeError() { handshakeErrors.withLock { $0 += 1 } }
    func log(_ line: String) { failures.log(line) }

    private static func build(_ settings: TLSServerSettings) throws(TLSError) -> OpaquePointer {
        guard let context = SSL_CTX_new(TLS_server_method()) else { throw TLSError("Failed to create SSL context") }
        func fail(_ message: String) -> TLSError {
            SSL_CTX_free(context)
            return TLSError("\(message): \(TLSServerContext.lastError())")
        }
        let versions = [TLS1_VERSION, TLS1_1_VERSION, TLS1_2_VERSION, TLS1_3_VERSION]
        guard versions.indices.contains(settings.minimumVersion),
              memcluster_ssl_ctx_set_min_version(context, versions[settings.minimumVersion]) == 1
        else { throw fail("Error setting the minimum TLS version") }
        guard let chain = settings.chainCertificate,
              SSL_CTX_use_certificate_chain_file(context, chain) == 1
        else { throw fail("Error loading the certificate chain: \(settings.chainCertificate ?? "(null)")") }
        let key = settings.privateKey ?? chain
        guard SSL_CTX_use_PrivateKey_file(context, key, SSL_FILETYPE_PEM) == 1 else {
            throw fail("Error loading the key: \(key)")
        }
        guard SSL_CTX_check_private_key(context) == 1 else {
            throw fail("Error validating the certificate")
        }
        if let ciphers = settings.ciphers, SSL_CTX_set_cipher_list(context, ciphers) != 1 {
            throw fail("Error setting the provided cipher(s): \(ciphers)")
        }
        if let ca = settings.caCertificate {
            guard SSL_CTX_load_verify_locations(context, ca, nil) == 1 else {
                throw fail("Error loading the CA certificate: \(ca)")
            }
            SSL_CTX_set_client_CA_list(context, SSL_load_client_CA_file(ca))
        }
        let verify: Int32
        switch settings.verifyMode {
        case 1: verify = SSL_VERIFY_PEER
        case 2: verify = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
        case 3: verify = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT | SSL_VERIFY_CLIENT_ONCE
        default: verify = SSL_VERIFY_NONE
        }
        SSL_CTX_set_verify(context, verify, nil)
        _ = memcluster_ssl_ctx_disable_session_cache(context)
        return context
    }

    /// OpenSSL's queued errors as one line, the queue emptied.
    static func lastError() -> String {
        var parts: [String] = []
        while case let code = ERR_get_error(), code != 0 {
            var text = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &text, text.count)
            parts.append(String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return parts.isEmpty ? "unknown error" : parts.joined(separator: "; ")
    }
}
