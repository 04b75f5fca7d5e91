"""Eviction policies replayed on the miss-ratio workload, item by item.

A model for choosing the node's eviction policy before building it: the same
request sequence as `missratio.run` (same seed, keys, sizes, scans), against a
cache of `budget` bytes where an item costs what a node record costs (32-byte
header, key, value, rounded to 8). It ignores segments and shards, so it
answers "which policy", not "which exact miss ratio"; docs/eviction.md puts
its answers next to the node's measured ones.

    python3 scripts/benchkit/evictionsim.py --budget 64 --scan-share 0.2
"""

from __future__ import annotations

import argparse
import collections
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
        entry = self.items.get(key)
        if entry is None:
            return False
        entry[1] = min(MAX_READS, entry[1] + 1)
        return True

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
        entry = self.small.get(key) or self.main.get(key)
        if entry is None:
            return False
        entry[1] = min(MAX_READS, entry[1] + 1)
        return True

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


POLICIES = {
    "lru": LRU,
    "clock, one read": lambda budget: ReadCountClock(budget, size_factor=None),
    "clock, two reads over 2x mean (node)": ReadCountClock,
    "s3-fifo": S3FIFO,
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
        print(f"-m {options.budget} scan share {options.scan_share:.0%}  {name:<40} miss ratio {ratio:.4f}", flush=True)


if __name__ == "__main__":
    main()
