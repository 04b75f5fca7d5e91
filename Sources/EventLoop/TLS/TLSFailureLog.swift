/// Where a TLS session reports a failed handshake.
protocol TLSFailureLog: AnyObject {
    func countHandshakeError()
    func log(_ line: String)
}
