/// An option value or combination the load generator refuses, with the message to show.
public struct ConfigurationError: Error, Equatable, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
