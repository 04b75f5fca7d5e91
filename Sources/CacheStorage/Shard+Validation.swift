/// Consistency checks for tests and debugging: walks everything, so it is slow.
extension ShardState {
    /// A description of the first inconsistency found, or nil.
    func validate() -> String? {
        var chained = 0
        var chainedBytes = 0
        let problem = table.forEachChain { head, belongsHere in
            var handle = head
            var length = 0
            while handle != 0 {
                let item = record(handle)
                guard item.kind == .item else { return "shard \(index): chain reaches a non-item record" }
                guard item.bits.contains(.linked) else { return "shard \(index): chain reaches an unlinked item" }
                guard item.bits.contains(.large) == (handle & Arena.largeHandleBit != 0) else {
                    return "shard \(index): large bit and handle disagree"
                }
                let hash = KeyHash.hash(UnsafeRawBufferPointer(item.key))
                guard context.shardIndex(hash: hash) == index, belongsHere(hash) else {
                    return "shard \(index): item in the wrong shard or bucket"
                }
                if item.bits.contains(.large) {
                    let stub = record(LargeItem.stubHandle(of: item))
                    guard stub.kind == .largeStub, Int(stub.clientFlags) == Int(handle & ~Arena.largeHandleBit),
                          stub.bits.contains(.linked) else {
                        return "shard \(index): large item's stub does not point back"
                    }
                    guard segments[Int(self.segment(ofHandle: LargeItem.stubHandle(of: item)))].owner == UInt16(index + 1) else {
                        return "shard \(index): large item's stub in a foreign segment"
                    }
                } else {
                    guard segments[Int(self.segment(ofHandle: handle))].owner == UInt16(index + 1) else {
                        return "shard \(index): item in a segment the shard does not own"
                    }
                }
                chained += 1
                chainedBytes += item.totalSize
                length += 1
                guard length <= counters.currentItems else { return "shard \(index): chain loops" }
                handle = item.next
            }
            return nil
        }
        if let problem { return problem }
        guard chained == counters.currentItems else {
            return "shard \(index): \(chained) chained items, counter \(counters.currentItems)"
        }
        guard chainedBytes == counters.bytes else {
            return "shard \(index): chained bytes \(chainedBytes) != counter \(counters.bytes)"
        }
        var listed = 0
        var linkedRecords = 0
        for band in [SizeBand.small, .large] {
            var segment = lists[band].oldest
            var previous: UInt32 = 0
            while segment != 0 {
                let info = segments[Int(segment)]
                guard info.owner == UInt16(index + 1), info.previous == previous, info.band == band else {
                    return "shard \(index): segment list broken at \(segment)"
                }
                let base = segmentBase(segment)
                var read = 0
                var live = 0
                while read < Int(info.writeOffset) {
                    let record = ItemRef(header: base + read)
                    let size = record.recordSize
                    guard size >= 8, size % 8 == 0 else { return "shard \(index): bad record size \(size) in segment \(segment)" }
                    if record.bits.contains(.linked) {
                        live += size
                        linkedRecords += 1
                        if record.kind == .largeStub {
                            let item = LargeItem.item(inBlock: large.block(Int(record.clientFlags)))
                            guard item.bits.contains(.linked), LargeItem.stubHandle(of: item) == handle(ofRecordAt: record.header) else {
                                return "shard \(index): linked stub without its large item"
                            }
                        } else {
                            guard record.kind == .item,
                                  chainSlot(of: handle(ofRecordAt: record.header), hash: KeyHash.hash(UnsafeRawBufferPointer(record.key))) != nil else {
                                return "shard \(index): linked record not in its chain"
                            }
                        }
                    }
                    read += size
                }
                guard read == Int(info.writeOffset) else { return "shard \(index): records overrun segment \(segment)" }
                guard live == Int(info.liveBytes) else {
                    return "shard \(index): segment \(segment) live bytes \(info.liveBytes), counted \(live)"
                }
                previous = segment
                segment = info.next
                listed += 1
            }
            guard previous == lists[band].newest else { return "shard \(index): \(band) head wrong" }
        }
        guard listed == segmentCount else { return "shard \(index): segment count wrong" }
        guard linkedRecords == counters.currentItems else {
            return "shard \(index): \(linkedRecords) linked records in segments, \(counters.currentItems) in the table"
        }
        guard pendingLarge == 0 else { return "shard \(index): large items pending outside a closure" }
        return nil
    }
}
