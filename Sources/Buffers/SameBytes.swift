#if canImport(Glibc)
import Glibc
#endif

extension UnsafeRawBufferPointer {
    /// Whether both hold the same bytes: one `memcmp`, where `elementsEqual`
    /// walks byte by byte through the generic sequence machinery (measured
    /// several times slower for 32-byte keys).
    @inlinable
    public func sameBytes(as other: UnsafeRawBufferPointer) -> Bool {
        guard count == other.count else { return false }
        guard count > 0, let left = baseAddress, let right = other.baseAddress else { return true }
        return memcmp(left, right, count) == 0
    }
}
