/// The nodes a key is stored on, primary first, in the order met walking the
/// ring clockwise from the key; or, during a membership change, the nodes a
/// request goes to (a key's new and old replicas together). Holds up to
/// `capacity` node indices inline, so a lookup hands it back by value without
/// touching the heap.
public struct ReplicaSet: RandomAccessCollection, Equatable, Sendable, CustomStringConvertible {
    /// The most replicas a key can have (`replicas:` in the configuration).
    public static let maximumReplicas = 8
    /// Room for a key's replicas under two memberships.
    public static let capacity = 2 * maximumReplicas

    private var storage: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    public private(set) var count = 0

    public init() {}

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }

    /// The node index at `position`.
    public subscript(position: Int) -> Int {
        precondition(position >= 0 && position < count, "ReplicaSet index out of range")
        // Safe because a homogeneous tuple is laid out as a C array of its
        // element, and `position` < count <= capacity (16 UInt16 in 32 bytes).
        return withUnsafeBytes(of: storage) {
            Int($0.load(fromByteOffset: position &* 2, as: UInt16.self))
        }
    }

    /// The key's owner, when the set is not empty.
    public var primary: Int? { isEmpty ? nil : self[0] }

    mutating func append(_ node: Int) {
        precondition(count < Self.capacity, "ReplicaSet is full")
        precondition(node >= 0 && node <= Int(UInt16.max), "node index out of range")
        let offset = count &* 2
        // Safe for the same reason as the subscript.
        withUnsafeMutableBytes(of: &storage) {
            $0.storeBytes(of: UInt16(truncatingIfNeeded: node), toByteOffset: offset, as: UInt16.self)
        }
        count &+= 1
    }

    /// Adds the nodes of `other` not already here, in their order, while room lasts.
    mutating func formUnion(_ other: ReplicaSet) {
        for node in other where count < Self.capacity && !contains(node) { append(node) }
    }

    /// The nodes here that `other` does not have, in order.
    func subtracting(_ other: ReplicaSet) -> ReplicaSet {
        var result = ReplicaSet()
        for node in self where !other.contains(node) { result.append(node) }
        return result
    }

    public static func == (lhs: ReplicaSet, rhs: ReplicaSet) -> Bool {
        lhs.elementsEqual(rhs)
    }

    public var description: String {
        "[" + map(String.init).joined(separator: ", ") + "]"
    }
}
