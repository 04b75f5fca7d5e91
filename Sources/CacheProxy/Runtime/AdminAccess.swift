/// Who may use the admin endpoint.
struct AdminAccess {
    /// The address the endpoint listens on.
    let address: HostPort

    /// A refusal when the request does not carry `token`, else nil.
    static func authorizationRefusal(_ head: AdminRequestHead, token: AdminToken) -> AdminResponse? {
        guard let credentials = head.value("authorization") else { return .unauthorized }
        let scheme = credentials.prefix { $0 != " " }
        guard scheme.lowercased() == "bearer" else { return .unauthorized }
        let presented = credentials.dropFirst(scheme.count).drop { $0 == " " }
        return token.matches(presented.utf8) ? nil : .wrongToken
    }
}
