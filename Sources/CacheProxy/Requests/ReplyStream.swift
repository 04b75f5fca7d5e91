import Buffers

/// A reply too large to hold whole, written into the client's output as the
/// socket drains (a multi-get naming one large value many times).
protocol ReplyStream: AnyObject {
    /// Appends more of the reply while `output` holds fewer than `limit` bytes;
    /// true once all of it is written.
    func write(into output: inout ByteBuffer, until limit: Int) -> Bool
}
