import Buffers
import MemcacheProtocol

/// Scale-out without a cold cache: after nodes are added, a key whose owner
/// changed misses at its new owner. Until warm-up ends, such a miss is looked up
/// on the key's previous owner (`mg <key> v f t`: value, flags and remaining TTL);
/// a hit is copied to the key's new replicas (`set`, keeping flags and TTL) and
/// the client's request is then sent again to the new owner, which now answers
/// it as if the key had always been there, whatever command it was.
///
///   miss at new owner --> mg at previous owner --hit--> set on new replicas --> retry request
///                                              '-miss/failure--> the client gets the miss
final class WarmupFetch: BackendCall {
    private let slot: ReplySlot
    private let generation: Int
    private var copiesPending = 0

    private init(slot: ReplySlot) {
        self.slot = slot
        self.generation = slot.tag(position: 0)
    }

    /// Starts a warm-up lookup for the slot's key; false when the previous owner
    /// cannot be reached (the miss stands).
    static func start(for slot: ReplySlot, from previousOwner: BackendNode) -> Bool {
        guard let backend = slot.worker.backend(for: previousOwner, session: nil) else { return false }
        let fetch = WarmupFetch(slot: slot)
        backend.send(call: fetch, tag: 0, shape: .single) { output in
            output.append("mg ")
            output.append(slot.keyBytes)
            output.append(" v f t\r\n")
        }
        return true
    }

    private var slotStillWaiting: Bool { slot.isCurrent(generation) && !slot.isComplete }

    func backend(_ node: BackendNode, received unit: Response, in bytes: UnsafeRawBufferPointer, tag: Int, last: Bool) {
        guard slotStillWaiting else { return }
        if tag > 0 {
            // A copy was stored (or refused); retry once every copy answered.
            copiesPending -= 1
            if copiesPending == 0 { retryAtNewOwner() }
            return
        }
        guard unit.kind == .metaValue, let found = MetaValue(unit, in: bytes), let topology = slot.topology else {
            return missStands()
        }
        slot.worker.counters.add(.warmupHits)
        copiesPending = ReplicaCopy.sendSet(key: slot.keyBytes, value: UnsafeRawBufferPointer(rebasing: bytes[unit.data]),
                                            clientFlags: found.clientFlags, exptime: found.exptime,
                                            replicas: slot.replicas, topology: topology, skipping: -1,
                                            worker: slot.worker, call: self, firstTag: 1)
        if copiesPending == 0 { missStands() }
    }

    func backend(_ node: BackendNode, failed failure: BackendFailure, tag: Int) {
        guard slotStillWaiting else { return }
        if tag > 0 {
            copiesPending -= 1
            if copiesPending == 0 { retryAtNewOwner() }
            return
        }
        missStands()
    }

    private func retryAtNewOwner() {
        slot.retriedMiss = true
        slot.reply.removeAll()
        slot.valuesSeen = 0
        slot.attempt = 0
        slot.sendRead()
    }

    /// Not on the previous owner either: answer the miss the new owner gave.
    private func missStands() {
        slot.worker.counters.add(.warmupMisses)
        slot.worker.counters.add(.getMisses)
        if slot.quiet == .hideMiss { slot.reply.removeAll() }
        slot.complete()
    }
}
