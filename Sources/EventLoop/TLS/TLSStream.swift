import COpenSSL
import Glibc

/// One connection's TLS session over its non-blocking socket: reads and
/// writes go through OpenSSL, which may need the other direction first (a
/// handshake, a key update); `Connection` asks `readNeedsWritable` and
/// `writeNeedsReadable` to know which event to wait for. Loop thread only.
final class TLSStream {
    private let ssl: OpaquePointer
    private let context: any TLSFailureLog
    /// The last read stopped until the socket takes bytes (not until it has some).
    private(set) var readNeedsWritable = false
    /// The last write stopped until the socket has bytes to read.
    private(set) var writeNeedsReadable = false
    private var handshakeDone = false

    /// The server side of a session on `fd`.
    init?(context: TLSServerContext, fd: Int32) {
        guard let ssl = context.newSession(fd: fd) else { return nil }
        self.ssl = ssl
        self.context = context
    }

    /// The client side of a session on `fd` (connecting), expecting `peer`.
    init?(context: TLSClientContext, fd: Int32, peer: String) {
        guard let ssl = context.newSession(fd: fd, peer: peer) else { return nil }
        self.ssl = ssl
        self.context = context
    }

    deinit { SSL_free(ssl) }

    /// Bytes buffered inside OpenSSL, decrypted or not, not read yet.
    var hasPending: Bool { SSL_has_pending(ssl) == 1 }

    func read(into space: UnsafeMutableRawBufferPointer) -> IOResult {
        readNeedsWritable = false
        var count = 0
        let result = SSL_read_ex(ssl, space.baseAddress, space.count, &count)
        if result == 1 {
            handshakeDone = true
            return .transferred(count)
        }
        return outcome(SSL_get_error(ssl, result), reading: true)
    }

    func write(_ bytes: UnsafeRawBufferPointer) -> IOResult {
        writeNeedsReadable = false
        guard !bytes.isEmpty else { return .transferred(0) }
        var count = 0
        let result = SSL_write_ex(ssl, bytes.baseAddress, bytes.count, &count)
        if result == 1 {
            handshakeDone = true
            return .transferred(count)
        }
        return outcome(SSL_get_error(ssl, result), reading: false)
    }

    /// Sends TLS's close notification, best effort (the socket closes next).
    func shutdown() {
        if handshakeDone { _ = SSL_shutdown(ssl) }
    }

    private func outcome(_ error: Int32, reading: Bool) -> IOResult {
        switch error {
        case SSL_ERROR_WANT_READ:
            if !reading { writeNeedsReadable = true }
            return .wouldBlock
        case SSL_ERROR_WANT_WRITE:
            if reading { readNeedsWritable = true }
            return .wouldBlock
        case SSL_ERROR_ZERO_RETURN:
            return .endOfFile
        case SSL_ERROR_SYSCALL:
            let code = errno
            ERR_clear_error()
            if !handshakeDone { context.countHandshakeError() }
            return code == 0 ? .endOfFile : .failed(errno: code)
        default:
            // A protocol failure: a plain-text client, a refused certificate.
            if !handshakeDone {
                context.countHandshakeError()
                context.log("TLS handshake failed: \(TLSServerContext.lastError())")
            } else {
                ERR_clear_error()
            }
            return .failed(errno: EPROTO)
        }
    }
}
