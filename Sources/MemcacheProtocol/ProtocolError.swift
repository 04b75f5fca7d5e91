/// Error replies, byte for byte as memcached 1.6.18 sends them (without `\r\n`).
public enum ProtocolError: Sendable, Equatable {
    case error                         // ERROR
    case badCommandLineFormat          // CLIENT_ERROR bad command line format
    case deleteUsage                   // CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]
    case badDataChunk                  // CLIENT_ERROR bad data chunk
    case invalidExptime                // CLIENT_ERROR invalid exptime argument
    case invalidDelta                  // CLIENT_ERROR invalid numeric delta argument
    case nonNumericValue               // CLIENT_ERROR cannot increment or decrement non-numeric value
    case lineTooLong                   // CLIENT_ERROR line too long (used where memcached closes)
    case objectTooLarge                // SERVER_ERROR object too large for cache
    case outOfMemoryStoring            // SERVER_ERROR out of memory storing object
    // Meta protocol.
    case metaInvalidFlag               // CLIENT_ERROR invalid flag
    case metaDuplicateFlag             // CLIENT_ERROR duplicate flag
    case metaInvalidOrDuplicateFlag    // CLIENT_ERROR invalid or duplicate flag
    case metaBadToken                  // CLIENT_ERROR bad token in command line format
    case metaOpaqueTooLong             // CLIENT_ERROR opaque token too long
    case metaGetFlagsTooLong           // CLIENT_ERROR options flags are too long
    case metaFlagsTooLong              // CLIENT_ERROR options flags too long
    case metaIncorrectModeLength       // CLIENT_ERROR incorrect length for M token
    case metaSetInvalidMode            // CLIENT_ERROR invalid mode for ms M token
    case metaArithmeticInvalidMode     // CLIENT_ERROR invalid mode for ma M token
    case metaInvalidInitial            // CLIENT_ERROR invalid numeric initial value
    case metaInvalidDelta              // CLIENT_ERROR invalid numeric delta value
    case metaKeyDecoding               // CLIENT_ERROR error decoding key
    /// `refresh_certs` on a server built without TLS (1.6.18's Debian binary), any arguments.
    case tlsNotEnabled                 // Error TLS not enabled

    /// The reply line without `\r\n`.
    public var line: StaticString {
        switch self {
        case .error: return "ERROR"
        case .badCommandLineFormat: return "CLIENT_ERROR bad command line format"
        case .deleteUsage: return "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]"
        case .badDataChunk: return "CLIENT_ERROR bad data chunk"
        case .invalidExptime: return "CLIENT_ERROR invalid exptime argument"
        case .invalidDelta: return "CLIENT_ERROR invalid numeric delta argument"
        case .nonNumericValue: return "CLIENT_ERROR cannot increment or decrement non-numeric value"
        case .lineTooLong: return "CLIENT_ERROR line too long"
        case .objectTooLarge: return "SERVER_ERROR object too large for cache"
        case .outOfMemoryStoring: return "SERVER_ERROR out of memory storing object"
        case .metaInvalidFlag: return "CLIENT_ERROR invalid flag"
        case .metaDuplicateFlag: return "CLIENT_ERROR duplicate flag"
        case .metaInvalidOrDuplicateFlag: return "CLIENT_ERROR invalid or duplicate flag"
        case .metaBadToken: return "CLIENT_ERROR bad token in command line format"
        case .metaOpaqueTooLong: return "CLIENT_ERROR opaque token too long"
        case .metaGetFlagsTooLong: return "CLIENT_ERROR options flags are too long"
        case .metaFlagsTooLong: return "CLIENT_ERROR options flags too long"
        case .metaIncorrectModeLength: return "CLIENT_ERROR incorrect length for M token"
        case .metaSetInvalidMode: return "CLIENT_ERROR invalid mode for ms M token"
        case .metaArithmeticInvalidMode: return "CLIENT_ERROR invalid mode for ma M token"
        case .metaInvalidInitial: return "CLIENT_ERROR invalid numeric initial value"
        case .metaInvalidDelta: return "CLIENT_ERROR invalid numeric delta value"
        case .metaKeyDecoding: return "CLIENT_ERROR error decoding key"
        case .tlsNotEnabled: return "Error TLS not enabled"
        }
    }
}
