import MemcacheProtocol

/// Receives replies nobody waits for: the writes the proxy makes on its own
/// (a CAS result copied to the other replicas, a moved key deleted at its old
/// owner). Such a write that fails leaves the node possibly stale, so it marks
/// the node down like any other missed write.
final class DiscardingReceiver: ReplyReceiver {
    private unowned let worker: ProxyWorker

    init(worker: ProxyWorker) { self.worker = worker }

    func backend(_ node: BackendNode, received unit: Response, in bytes: UnsafeRawBufferPointer, tag: Int,
                 last: Bool) -> Bool { true }

    func backend(_ node: BackendNode, failed failure: BackendFailure, tag: Int) {
        worker.missedWrite(on: node, failure: failure)
    }
}
