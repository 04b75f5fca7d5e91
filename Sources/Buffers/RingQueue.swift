/// A first-in first-out queue over a growable circular array: append at the
/// back, remove at the front, both O(1) and without allocating once the
/// storage has grown to the queue's working size. Used for the requests in
/// flight on a connection, whose replies come back in the same order.
///
/// `@inlinable`: the queue sits on the proxy's per-request path in another
/// module, and unspecialised generic code there looked up its element type's
/// metadata at run time on every append and removal.
public struct RingQueue<Element> {
    @usableFromInline var storage: [Element?]
    @usableFromInline var head = 0
    @usableFromInline var stored = 0

    @inlinable public var count: Int { stored }

    @inlinable
    public init(capacity: Int = 16) {
        storage = Array(repeating: nil, count: max(1, capacity))
    }

    @inlinable public var isEmpty: Bool { count == 0 }

    @inlinable public var first: Element? { count == 0 ? nil : storage[head] }

    @inlinable
    public mutating func append(_ element: Element) {
        if count == storage.count { grow() }
        storage[(head + count) % storage.count] = element
        stored += 1
    }

    @inlinable
    @discardableResult
    public mutating func removeFirst() -> Element {
        precondition(count > 0, "removeFirst on an empty queue")
        let element = storage[head]!
        storage[head] = nil
        head = (head + 1) % storage.count
        stored -= 1
        return element
    }

    /// The element `offset` places behind the front.
    @inlinable
    public subscript(offset: Int) -> Element {
        get {
            precondition(offset >= 0 && offset < count)
            return storage[(head + offset) % storage.count]!
        }
        set {
            precondition(offset >= 0 && offset < count)
            storage[(head + offset) % storage.count] = newValue
        }
    }

    @inlinable
    public mutating func removeAll() {
        while count > 0 { removeFirst() }
    }

    @usableFromInline
    mutating func grow() {
        var larger: [Element?] = Array(repeating: nil, count: storage.count * 2)
        for index in 0..<count { larger[index] = storage[(head + index) % storage.count] }
        storage = larger
        head = 0
    }
}
