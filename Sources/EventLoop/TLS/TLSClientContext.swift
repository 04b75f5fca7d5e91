import COpenSSL
import Concurrency
import Glibc

/// How a client (the proxy, towards its nodes) speaks TLS.
public struct TLSClientSettings: Sendable, Equatable {
    /// CA certificates (PEM) the server's certificate must chain to.
    public var caCertificate: String
    /// A client certificate and key, for servers that require one.
    public var certificate: String?
    public var privateKey: String?

    public init(caCertificate: String, certificate: String? = nil, privateKey: String? = nil) {
        self.caCertificate = caCertificate
        self.certificate = certificate
        self.privateKey = privateKey
    }
}

/// The client side's OpenSSL context, shared by every outgoing connection:
/// the server's certificate must chain to the CA and name the address (or
/// host name) connected to. `reload()` reads the files again. Thread-safe.
public final class TLSClientContext: TLSFailureLog, @unchecked Sendable {
    public let settings: TLSClientSettings
    private let slot: SSLContextSlot
    public let handshakeErrors = Locked<UInt64>(0)
    private let failures = ThrottledLog()

    public init(settings: TLSClientSettings) throws(TLSError) {
        self.settings = settings
        slot = SSLContextSlot(try TLSClientContext.build(settings))
    }

    public func reload() throws(TLSError) {
        slot.replace(with: try TLSClientContext.build(settings))
    }

    func countHandshakeError() { handshakeErrors.withLock { $0 += 1 } }
    func log(_ line: String) { failures.log(line) }

    /// A client session on socket `fd`, expecting the server to be `peer`.
    func newSession(fd: Int32, peer: String) -> OpaquePointer? {
        let ssl = slot.newSession()
        guard let ssl else { return nil }
        let isIP = peer.contains(":") || peer.allSatisfy { $0 == "." || $0.isNumber }
        guard SSL_set_fd(ssl, fd) == 1, memcluster_ssl_expect_peer(ssl, peer, isIP ? 1 : 0) == 1 else {
            SSL_free(ssl)
            return nil
        }
        // A proxy holds a few busy links to each node: buffers kept, no allocation per request.
        memcluster_ssl_set_modes(ssl, 0)
        SSL_set_connect_state(ssl)
        return ssl
    }

    private static func build(_ settings: TLSClientSettings) throws(TLSError) -> OpaquePointer {
        guard let context = SSL_CTX_new(TLS_client_method()) else { throw TLSError("Failed to create SSL context") }
        func fail(_ message: String) -> TLSError {
            SSL_CTX_free(context)
            return TLSError("\(message) : \(TLSServerContext.lastError())")
        }
        guard memcluster_ssl_ctx_set_min_version(context, TLS1_2_VERSION) == 1 else {
            throw fail("Error setting the minimum TLS version")
        }
        guard SSL_CTX_load_verify_locations(context, settings.caCertificate, nil) == 1 else {
            throw fail("Error loading the CA certificate: \(settings.caCertificate)")
        }
        SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
        if let certificate = settings.certificate {
            guard SSL_CTX_use_certificate_chain_file(context, certificate) == 1 else {
                throw fail("Error loading the client certificate: \(certificate)")
            }
            let key = settings.privateKey ?? certificate
            guard SSL_CTX_use_PrivateKey_file(context, key, SSL_FILETYPE_PEM) == 1,
                  SSL_CTX_check_private_key(context) == 1
            else { throw fail("Error loading the client key: \(key)") }
        }
        return context
    }
}
