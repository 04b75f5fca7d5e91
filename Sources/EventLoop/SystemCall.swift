import CLibevent
import Glibc

/// An operating-system call that failed, with the errno it set.
public struct SystemCallError: Error, CustomStringConvertible, Sendable {
    public let call: String
    public let errno: Int32

    public init(_ call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    public var description: String {
        "\(call): \(String(cString: strerror(errno)))"
    }
}

/// Runs a system call, retrying on EINTR; a negative result becomes a `SystemCallError`.
@inlinable
@discardableResult
public func retryingSystemCall<T: FixedWidthInteger>(_ name: @autoclosure () -> String, _ body: () -> T) throws(SystemCallError) -> T {
    while true {
        let result = body()
        if result >= 0 { return result }
        let error = errno
        if error == EINTR { continue }
        throw SystemCallError(name(), errno: error)
    }
}

/// Outcome of a non-blocking read or write.
public enum IOResult: Equatable, Sendable {
    case transferred(Int)
    case wouldBlock
    case endOfFile
    case failed(errno: Int32)
}

public enum NonBlockingIO {
    /// One read(2) into `buffer`, retried on EINTR.
    @inlinable
    public static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) -> IOResult {
        while true {
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n > 0 { return .transferred(n) }
            if n == 0 { return .endOfFile }
            let error = errno
            if error == EINTR { continue }
            if error == EAGAIN || error == EWOULDBLOCK { return .wouldBlock }
            return .failed(errno: error)
        }
    }

    /// One write(2) of `buffer`, retried on EINTR.
    @inlinable
    public static func write(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) -> IOResult {
        while true {
            let n = Glibc.write(fd, buffer.baseAddress, buffer.count)
            if n >= 0 { return .transferred(n) }
            let error = errno
            if error == EINTR { continue }
            if error == EAGAIN || error == EWOULDBLOCK { return .wouldBlock }
            return .failed(errno: error)
        }
    }
}
