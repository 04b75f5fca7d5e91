"""A cache-aside client for miss-ratio measurements: a bounded, single
connection driver in plain Python (no third-party package).

Workload: keys 0..keys-1 drawn from a Zipf distribution (exponent 0.99 by
default, key 0 hottest); each key has a fixed value size, log-uniform between
`min_size` and `max_size` (50 B-10 KiB: many small values, a few large), so a
key is always the same object. Every get that misses is followed by a set of
that key (cache-aside: the application fetched it from the database). With
`scan_share` > 0, that share of the requests belongs to one-hit scans: bursts
of `scan_length` keys never asked for before and never again, each missed and
then set, as a batch job reading through cold data would do.

Requests go out as multi-gets of `batch` keys, then one set per miss. A key
asked for twice in one batch that missed the first time counts the second as
a hit: sequentially, the set after the first miss would have stored it.
"""

from __future__ import annotations

import bisect
import math
import random
import socket
import time
from dataclasses import dataclass, field


class Zipf:
    """Key index 0..n-1 with probability proportional to 1 / (index + 1)^exponent."""

    def __init__(self, n: int, exponent: float, rng: random.Random):
        weights = [1.0 / (i + 1) ** exponent for i in range(n)]
        total = 0.0
        self.cdf = []
        for w in weights:
            total += w
            self.cdf.append(total)
        self.total, self.rng, self.n = total, rng, n

    def sample(self) -> int:
        return min(bisect.bisect_left(self.cdf, self.rng.random() * self.total), self.n - 1)


def value_size(index: int, min_size: int, max_size: int) -> int:
    """Log-uniform in [min_size, max_size], fixed per key (a hash of its index)."""
    h = (index * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF
    h ^= h >> 31
    h = (h * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    fraction = (h >> 11) / float(1 << 53)
    return int(min_size * math.exp(fraction * math.log(max_size / min_size)))


def mean_value_size(min_size: int, max_size: int) -> float:
    return (max_size - min_size) / math.log(max_size / min_size)


@dataclass
class MissCounts:
    gets: int = 0
    misses: int = 0
    scan_gets: int = 0
    scan_misses: int = 0
    sets: int = 0
    set_failures: int = 0
    bytes_set: int = 0
    windows: list = field(default_factory=list)  # (requests so far, zipf miss ratio of the window)

    @property
    def miss_ratio(self) -> float:
        return self.misses / self.gets if self.gets else 0.0

    @property
    def overall_miss_ratio(self) -> float:
        total = self.gets + self.scan_gets
        return (self.misses + self.scan_misses) / total if total else 0.0


class Client:
    """Text protocol over one connection: multi-get, then sets."""

    def __init__(self, port: int, timeout: float):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.reader = self.sock.makefile("rb", buffering=1 << 16)

    def close(self):
        self.reader.close()
        self.sock.close()

    def get_many(self, keys: list[bytes]) -> set[bytes]:
        self.sock.sendall(b"get " + b" ".join(keys) + b"\r\n")
        found = set()
        while True:
            line = self.reader.readline()
            if line == b"END\r\n":
                return found
            parts = line.split()
            if len(parts) < 4 or parts[0] != b"VALUE":
                raise RuntimeError(f"unexpected reply to get: {line[:80]!r}")
            length = int(parts[3])
            data = self.reader.read(length + 2)
            if len(data) != length + 2:
                raise RuntimeError("connection closed inside a value")
            found.add(parts[1])

    def set_many(self, items: list[tuple[bytes, int]]) -> int:
        """Sets every (key, size); returns how many were not STORED."""
        out = bytearray()
        for key, size in items:
            out += b"set %s 0 0 %d\r\n" % (key, size) + b"v" * size + b"\r\n"
        self.sock.sendall(out)
        failed = 0
        for _ in items:
            line = self.reader.readline()
            if line != b"STORED\r\n":
                if not line.startswith((b"SERVER_ERROR", b"NOT_STORED")):
                    raise RuntimeError(f"unexpected reply to set: {line[:80]!r}")
                failed += 1
        return failed


def key_name(index: int) -> bytes:
    return b"mr:%012d" % index


def run(port: int, keys: int, requests: int, exponent: float = 0.99, min_size: int = 50, max_size: int = 10240,
        scan_share: float = 0.0, scan_length: int = 1000, batch: int = 16, seed: int = 1,
        measure_from: float = 0.5, time_limit: float = 300.0) -> MissCounts:
    """Drives `requests` gets (zipf and scan) cache-aside against 127.0.0.1:`port`.
    Miss ratios count only requests after the first `measure_from` share (the cache
    is filling before that). Stops with an error after `time_limit` seconds."""
    rng = random.Random(seed)
    zipf = Zipf(keys, exponent, rng)
    counts = MissCounts()
    client = Client(port, timeout=30)
    deadline = time.monotonic() + time_limit
    next_scan_key = keys  # scan keys lie beyond the key space: each is asked for once
    scan_left = 0
    window_gets = window_misses = 0
    window_every = max(requests // 20, batch)
    try:
        done = 0
        while done < requests:
            if time.monotonic() > deadline:
                raise TimeoutError(f"miss-ratio run passed its {time_limit:.0f} s limit after {done} requests")
            picked: list[tuple[int, bool]] = []
            for _ in range(min(batch, requests - done)):
                if scan_left == 0 and scan_share > 0 and rng.random() < scan_share / scan_length:
                    scan_left = scan_length
                if scan_left > 0:
                    picked.append((next_scan_key, True))
                    next_scan_key += 1
                    scan_left -= 1
                else:
                    picked.append((zipf.sample(), False))
            names = [key_name(index) for index, _ in picked]
            found = client.get_many(names)
            first_measured = requests * measure_from
            to_set, stored_now = [], set()
            for position, ((index, is_scan), name) in enumerate(zip(picked, names)):
                measured = done + position >= first_measured
                hit = name in found or name in stored_now
                if not hit:
                    size = value_size(index, min_size, max_size)
                    to_set.append((name, size))
                    stored_now.add(name)
                    counts.bytes_set += size
                if measured:
                    if is_scan:
                        counts.scan_gets += 1
                        counts.scan_misses += not hit
                    else:
                        counts.gets += 1
                        counts.misses += not hit
                if not is_scan:
                    window_gets += 1
                    window_misses += not hit
            if to_set:
                counts.sets += len(to_set)
                counts.set_failures += client.set_many(to_set)
            done += len(picked)
            if window_gets >= window_every:
                counts.windows.append((done, window_misses / window_gets))
                window_gets = window_misses = 0
    finally:
        client.close()
    return counts


def settled(windows: list, tolerance: float = 0.1) -> bool:
    """Whether the Zipf miss ratio had stopped falling over the measured half:
    the windows of its second half within `tolerance` (relative) of its first
    half's. A cache still filling, or still pushing out what the fill left,
    shows a ratio that keeps dropping: run more requests per key."""
    measured = [ratio for _, ratio in windows[len(windows) // 2:]]
    if len(measured) < 4:
        return False
    early, late = measured[: len(measured) // 2], measured[len(measured) // 2:]
    early_mean, late_mean = sum(early) / len(early), sum(late) / len(late)
    return late_mean == 0 or (early_mean - late_mean) / late_mean <= tolerance
