/// The nodes a key is stored on, primary first, in the order met walking the
/// ring clockwise from the key. Holds up to `capacity` node indices inline, so
/// a lookup hands it back by value without touching the heap.
public struct ReplicaSet: RandomAccessCollection, Equatable, Sendable, CustomStringConvertible {
    public static let capacity = 8

    private var storage: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32) = (0, 0, 0, 0, 0, 0, 0, 0)
    public private(set) var count = 0

    public init() {}

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }

    /// The node index at `position`.
    public subscript(position: Int) -> Int {
        precondition(position >= 0 && position < count, "ReplicaSet index out of range")
        // Safe because a homogeneous tuple is laid out as a C array of its
        // element, and `position` < count <= capacity.
        return withUnsafeBytes(of: storage) {
            Int($0.load(fromByteOffset: position &* 4, as: UInt32.self))
        }
    }

    /// The key's owner, when the set is not empty.
    public var primary: Int? { isEmpty ? nil : self[0] }

    mutating func append(_ node: Int) {
        precondition(count < Self.capacity, "ReplicaSet is full")
        let offset = count &* 4
        // Safe for the same reason as the subscript.
        withUnsafeMutableBytes(of: &storage) {
            $0.storeBytes(of: UInt32(truncatingIfNeeded: node), toByteOffset: offset, as: UInt32.self)
        }
        count &+= 1
    }

    public static func == (lhs: ReplicaSet, rhs: ReplicaSet) -> Bool {
        lhs.elementsEqual(rhs)
    }

    public var description: String {
        "[" + map(String.init).joined(separator: ", ") + "]"
    }
}
