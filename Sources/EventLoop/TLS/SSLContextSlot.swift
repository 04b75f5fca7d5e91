import COpenSSL
import Concurrency

/// The `SSL_CTX` a TLS context hands out sessions from, swapped whole when
/// the certificates are read again: sessions made later use the new one,
/// those already open keep theirs (OpenSSL counts its references). Thread-safe.
final class SSLContextSlot: @unchecked Sendable {
    private let current: Locked<OpaquePointer>

    init(_ context: OpaquePointer) { current = Locked(context) }

    deinit { current.withLock { SSL_CTX_free($0) } }

    func replace(with fresh: OpaquePointer) {
        let old = current.withLock { context -> OpaquePointer in
            let old = context
            context = fresh
            return old
        }
        SSL_CTX_free(old)
    }

    /// A new session from the current context, or nil.
    func newSession() -> OpaquePointer? { current.withLock { SSL_new($0) } }
}
