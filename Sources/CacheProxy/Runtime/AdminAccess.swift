/// Who may use the admin endpoint.
///
/// A browser page from another site can send a POST to any address the
/// browser reaches (a form, or `fetch` in no-cors mode) without reading the
/// answer, which is all a reload needs; it cannot add an `Authorization`
/// header, and it announces itself with `Origin` and `Sec-Fetch-Site`. A
/// page whose name its site re-points at 127.0.0.1 (DNS rebinding) is "same
/// origin" for the browser, but its requests name that site in `Host`.
struct AdminAccess {
    /// The address the endpoint listens on: the authority a request without
    /// `Host` is taken to name.
    let address: HostPort

    /// A refusal when the request comes from a page of another origin (or
    /// another site's name for this address), else nil.
    func crossOriginRefusal(_ head: AdminRequestHead) -> AdminResponse? {
        var authority = address
        if let host = head.value("host"), let named = HostPort(parsing: host, defaultPort: 80) {
            // Only loopback names reach a loopback endpoint honestly.
            if address.isLoopback && !named.isLoopback {
                return .forbidden("Host does not name this endpoint's loopback address")
            }
            authority = named
        }
        // `none`: typed in the address bar or a bookmark.
        if let site = head.value("sec-fetch-site"), site != "same-origin", site != "none" {
            return .forbidden("cross-origin request refused")
        }
        if let origin = head.value("origin"), !AdminAccess.origin(origin, isSameAs: authority) {
            return .forbidden("cross-origin request refused")
        }
        return nil
    }

    /// `http://host[:port]` naming `authority` (`null`, https and other
    /// hosts or ports are other origins).
    static func origin(_ origin: String, isSameAs authority: HostPort) -> Bool {
        let scheme = "http://"
        guard origin.lowercased().hasPrefix(scheme),
              let named = HostPort(parsing: String(origin.dropFirst(scheme.count)), defaultPort: 80) else { return false }
        return named.port == authority.port && named.host.lowercased() == authority.host.lowercased()
    }

    /// A refusal when the request does not carry `token`, else nil.
    static func authorizationRefusal(_ head: AdminRequestHead, token: AdminToken) -> AdminResponse? {
        guard let credentials = head.value("authorization") else { return .unauthorized }
        let scheme = credentials.prefix { $0 != " " }
        guard scheme.lowercased() == "bearer" else { return .unauthorized }
        let presented = credentials.dropFirst(scheme.count).drop { $0 == " " }
        return token.matches(presented.utf8) ? nil : .wrongToken
    }
}
