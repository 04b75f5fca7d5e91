"""Eviction policies replayed on the miss-ratio workload, item by item.

A model for choosing the node's eviction policy before building it: the same
request sequence as `missratio.run` (same seed, keys, sizes, scans), against a
cache of `budget` bytes where an item costs what a node record costs (32-byte
header, key, value, rounded to 8). Most policies are item by item (which
policy); `SegmentStore` also has the node's shards and segments, and predicts
the node's measured miss ratio closely. docs/eviction.md puts the answers next
to the node's measured ones.

    python3 scripts/benchkit/evictionsim.py --budget 64 --scan-share 0.2
"""

from __future__ import annotations

import argparse
import collections
import heapq
import os
import random
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchkit import missratio  # noqa: E402
else:
    from . import missratio

MAX_READS = 3  # the node's read count saturates here (two bits)


def requests(keys: int, count: int, scan_share: float, scan_length: int = 1000, seed: int = 1):
    """(key index, is part of a scan) in the order missratio.run asks for them."""
    rng = random.Random(seed)
    zipf = missratio.Zipf(keys, 0.99, rng)
    next_scan_key, scan_left = keys, 0
    for _ in range(count):
        if scan_left == 0 and scan_share > 0 and rng.random() < scan_share / scan_length:
            scan_left = scan_length
        if scan_left > 0:
            yield next_scan_key, True
            next_scan_key += 1
            scan_left -= 1
        else:
            yield zipf.sample(), False


def count_read(entry: list | None, slot: int) -> bool:
    """A read of a cached entry, whose read count is at `slot` (saturating
    at MAX_READS). False when the key is not cached."""
    if entry is None:
        return False
    entry[slot] = min(MAX_READS, entry[slot] + 1)
    return True


def record_size(index: int) -> int:
    return (32 + len(missratio.key_name(index)) + missratio.value_size(index, 50, 10240) + 7) & ~7


class LRU:
    def __init__(self, budget: int):
        self.budget, self.used, self.items = budget, 0, collections.OrderedDict()

    def read(self, key) -> bool:
        if key in self.items:
            self.items.move_to_end(key)
            return True
        return False

    def write(self, key, size: int):
        self.items[key] = size
        self.used += size
        while self.used > self.budget:
            self.used -= self.items.popitem(last=False)[1]


class ReadCountClock:
    """The node's policy without its segments: FIFO order; the oldest item stays
    (moved to the new end, a read taken off) if read since its last pass, twice
    when over `size_factor` times the mean size (None: once for all)."""

    def __init__(self, budget: int, size_factor: float | None = 2.0):
        self.budget, self.used, self.items, self.size_factor = budget, 0, collections.OrderedDict(), size_factor

    def read(self, key) -> bool:
        return count_read(self.items.get(key), 1)

    def write(self, key, size: int):
        self.items[key] = [size, 0]
        self.used += size
        while self.used > self.budget:
            oldest, entry = self.items.popitem(last=False)
            mean = self.used / (len(self.items) + 1)
            needed = 2 if self.size_factor and entry[0] > self.size_factor * mean else 1
            if entry[1] >= needed:
                entry[1] -= 1
                self.items[oldest] = entry
            else:
                self.used -= entry[0]


class S3FIFO:
    """Small FIFO (`small_share` of the budget) for new items, main FIFO with
    read-count reinsertion, and a ghost of keys evicted from the small one
    (as many as main holds): a ghost key comes back straight into main."""

    def __init__(self, budget: int, small_share: float = 0.1):
        self.budget, self.small_share = budget, small_share
        self.small, self.main, self.ghost = collections.OrderedDict(), collections.OrderedDict(), collections.OrderedDict()
        self.small_used = self.main_used = 0

    def read(self, key) -> bool:
        return count_read(self.small.get(key) or self.main.get(key), 1)

    def write(self, key, size: int):
        if self.ghost.pop(key, None) is not None:
            self.main[key] = [size, 0]
            self.main_used += size
        else:
            self.small[key] = [size, 0]
            self.small_used += size
        while self.small_used + self.main_used > self.budget:
            if self.small_used > self.budget * self.small_share or not self.main:
                oldest, entry = self.small.popitem(last=False)
                self.small_used -= entry[0]
                if entry[1] > 0:
                    entry[1] = 0
                    self.main[oldest] = entry
                    self.main_used += entry[0]
                else:
                    self.ghost[oldest] = True
                    while len(self.ghost) > max(1, len(self.main)):
                        self.ghost.popitem(last=False)
            else:
                oldest, entry = self.main.popitem(last=False)
                if entry[1] > 0:
                    entry[1] -= 1
                    self.main[oldest] = entry
                else:
                    self.main_used -= entry[0]


class GreedyDualSize:
    """A reference, not buildable as is: evict the item of lowest priority,
    L + reads / size (L: the priority of the last one evicted)."""

    def __init__(self, budget: int):
        self.budget, self.used, self.floor = budget, 0, 0.0
        self.items, self.heap = {}, []

    def _push(self, key, entry):
        entry[2] = self.floor + entry[1] / entry[0]
        heapq.heappush(self.heap, (entry[2], key))

    def read(self, key) -> bool:
        entry = self.items.get(key)
        if entry is None:
            return False
        entry[1] += 1
        self._push(key, entry)
        return True

    def write(self, key, size: int):
        self.items[key] = entry = [size, 1, 0.0]
        self._push(key, entry)
        self.used += size
        while self.used > self.budget:
            priority, oldest = heapq.heappop(self.heap)
            entry = self.items.get(oldest)
            if entry is not None and entry[2] == priority:
                self.floor = priority
                del self.items[oldest]
                self.used -= entry[0]


class SegmentStore:
    """The node's store: keys hashed over `shards`, each with budget / shards of
    segments sized as the node sizes them; records appended to the head of
    their band (large: over the shard's mean item and twice the small band's
    mean record); a store needing room
    compacts in place the segment due first (read items stay, a read taken
    off) and makes it the head of its own band. A segment becoming a head is
    due at the clock plus 2^32 / (band mean record size)^2, the large band's
    at least 1/64 of the small band's (Shard+Eviction.swift). `bands=1` with
    `size_rule` is the node before size bands: one list, two reads to stay for
    items over twice the mean."""

    class Segment:
        __slots__ = ("band", "due", "keys", "used")

    def __init__(self, budget: int, shards: int = 8, bands: int = 2, size_rule: bool = False):
        self.segment_size = 1 << max(16, min(20, (budget // (shards * 8)).bit_length() - 1))
        count = max(2, budget // shards // self.segment_size)
        self.shards = [_SegmentShard(count, self.segment_size, bands, size_rule) for _ in range(shards)]

    def _shard(self, key):
        mixed = ((key if isinstance(key, int) else hash(key)) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        return self.shards[(mixed >> 40) % len(self.shards)]

    def read(self, key) -> bool:
        return self._shard(key).read(key)

    def write(self, key, size: int):
        self._shard(key).write(key, size)


class _SegmentShard:
    def __init__(self, segments: int, segment_size: int, bands: int, size_rule: bool):
        self.capacity, self.segment_size, self.size_rule = segments, segment_size, size_rule
        self.lists = [collections.deque() for _ in range(bands)]   # oldest first; the last is the head
        self.items = {}                       # key -> [segment, size, reads]
        self.clock, self.count, self.bytes = 0, 0, 0
        self.means = [0] * bands
        self.segments = 0

    def read(self, key) -> bool:
        return count_read(self.items.get(key), 2)

    def interval(self, band: int) -> int:
        small = max(1, (1 << 32) // max(32, self.means[0]) ** 2)
        if band == 0:
            return small
        return max((1 << 32) // max(32, self.means[band]) ** 2, small // 64)

    def make_head(self, segment, band: int):
        segment.band, segment.due = band, self.clock + self.interval(band)
        self.lists[band].append(segment)

    def write(self, key, size: int):
        band = 1 if len(self.lists) > 1 and size * self.count > self.bytes and size > 2 * self.means[0] else 0
        self.means[band] = size if self.means[band] == 0 else self.means[band] + (size - self.means[band]) // 32
        for attempt in range(1, self.capacity + 73):
            heads = self.lists[band]
            if heads and self.segment_size - heads[-1].used >= size:
                break
            if self.segments < self.capacity:
                segment = SegmentStore.Segment()
                segment.keys, segment.used = [], 0
                self.segments += 1
                self.make_head(segment, band)
                continue
            self.pass_over(band, keep_all=attempt <= min(self.capacity, 8))
        else:
            raise RuntimeError("no room found")
        head = heads[-1]
        head.keys.append(key)
        head.used += size
        self.items[key] = [head, size, 0]
        self.count, self.bytes = self.count + 1, self.bytes + size

    def pass_over(self, band: int, keep_all: bool):
        fronts = [lst for lst in self.lists if lst]
        segment = min(fronts, key=lambda lst: lst[0].due).popleft()
        self.clock = max(self.clock, segment.due)
        mean = self.bytes / max(1, self.count)
        kept, retained, limit = [], 0, self.segment_size if keep_all else self.segment_size // 2
        for key in segment.keys:
            entry = self.items.get(key)
            if entry is None or entry[0] is not segment:
                continue
            needed = 2 if self.size_rule and entry[1] > 2 * mean else 1
            if entry[2] >= needed and retained + entry[1] <= limit:
                entry[2] -= 1
                kept.append(key)
                retained += entry[1]
            else:
                del self.items[key]
                self.count, self.bytes = self.count - 1, self.bytes - entry[1]
        segment.keys, segment.used = kept, retained
        self.make_head(segment, band)


POLICIES = {
    "lru": LRU,
    "clock, one read": lambda budget: ReadCountClock(budget, size_factor=None),
    "clock, two reads over 2x mean": ReadCountClock,
    "s3-fifo": S3FIFO,
    "greedydual-size (reference)": GreedyDualSize,
    "segments, one list, two reads over 2x mean (node before)": lambda budget: SegmentStore(budget, bands=1, size_rule=True),
    "segments, two size bands (node)": SegmentStore,
}


def miss_ratio(policy, keys: int, count: int, scan_share: float) -> float:
    """Cache-aside replay; like missratio.run, counts the Zipf gets of the second half."""
    gets = misses = 0
    for position, (index, is_scan) in enumerate(requests(keys, count, scan_share)):
        hit = policy.read(index)
        if not hit:
            policy.write(index, record_size(index))
        if position >= count // 2 and not is_scan:
            gets += 1
            misses += not hit
    return misses / gets if gets else 0.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=64, help="MB, as -m")
    parser.add_argument("--requests-per-key", type=float, default=6.0)
    parser.add_argument("--scan-share", type=float, default=0.0)
    parser.add_argument("--policy", action="append", choices=sorted(POLICIES), help="repeatable; default all")
    options = parser.parse_args()
    keys = int(4 * options.budget * 2**20 / missratio.mean_value_size(50, 10240))
    count = int(keys * options.requests_per_key)
    for name in options.policy or POLICIES:
        ratio = miss_ratio(POLICIES[name](options.budget << 20), keys, count, options.scan_share)
        print(f"-m {options.budget} scan share {options.scan_share:.0%}  {name:<58} miss ratio {ratio:.4f}", flush=True)


if __name__ == "__main__":
    main()
