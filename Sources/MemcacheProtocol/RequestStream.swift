/// A connection's request framing across reads: the parser, plus the bytes of a
/// refused data block still to be dropped as they arrive. A server calls `next`
/// in a loop over its input buffer until it says `.needMoreData`:
///
///   input: |consumed ... | next request ... |
///          next(input, consumed: &consumed, into: &request) -> event, consumed moved past it
public struct RequestStream: Sendable {
    public let parser: RequestParser
    /// Bytes of a refused data block still to drop (memcached's conn_swallow).
    @usableFromInline var swallowRemaining = 0
    /// Where in `input` the bytes of the last event began (after any dropped
    /// data). After `.invalid(.badDataChunk, ...)` the `Request` still holds the
    /// storage command and key of the refused request, ranges into `input[lastStart...]`.
    public var lastStart: Int { lastEventStart }
    @usableFromInline var lastEventStart = 0

    public enum Event: Sendable, Equatable {
        /// A complete request, written into the caller's `Request`; its ranges are
        /// offsets into `input[start...]`.
        case request(start: Int)
        /// Answer `error` unless `quiet`; its bytes are consumed (or being dropped).
        case invalid(ProtocolError, quiet: Bool)
        /// A storage request whose value is too large (see `ParseOutcome.tooLarge`);
        /// the `Request` holds command, key and noreply, ranges into `input[start...]`.
        case tooLarge(start: Int)
        /// Everything usable is consumed; `totalLength` as in `ParseOutcome.needMoreData`.
        case needMoreData(totalLength: Int?)
        /// The stream cannot be framed: close the connection.
        case close
        /// Answer `CLIENT_ERROR line too long`, then close (see `ParseOutcome.lineTooLong`).
        case lineTooLong
    }

    public init(parser: RequestParser) {
        self.parser = parser
    }

    /// Forgets the event just framed, which the caller will frame again from
    /// its start (a request that must wait): its value is not dropped yet.
    public mutating func rewind() {
        swallowRemaining = 0
    }

    /// Frames the next event at `input[consumed...]` and moves `consumed` past
    /// every byte it used (dropped data included).
    @inlinable
    public mutating func next(_ input: UnsafeRawBufferPointer, consumed: inout Int, into request: inout Request) -> Event {
        if swallowRemaining > 0 {
            let dropped = min(swallowRemaining, input.count - consumed)
            swallowRemaining -= dropped
            consumed += dropped
        }
        guard consumed < input.count else { return .needMoreData(totalLength: nil) }
        let start = consumed
        lastEventStart = start
        switch parser.parse(UnsafeRawBufferPointer(rebasing: input[start...]), into: &request) {
        case .request:
            consumed += request.length
            return .request(start: start)
        case .needMoreData(let totalLength):
            return .needMoreData(totalLength: totalLength)
        case .invalid(let error, let consume, let swallow, let quiet):
            consumed += consume
            swallowRemaining = swallow
            return .invalid(error, quiet: quiet)
        case .tooLarge(let consume, let swallow):
            consumed += consume
            swallowRemaining = swallow
            return .tooLarge(start: start)
        case .close:
            return .close
        case .lineTooLong:
            return .lineTooLong
        }
    }
}
