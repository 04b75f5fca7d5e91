"""An independent ketama implementation for the tests' predictions, written
from libmemcached's and twemproxy's sources (not from the proxy's):

* points: per server floor(weight/total * 160/4 * nservers + 1e-10) * 4,
  computed in 32-bit float as both C sources do;
* point strings `host-k` (port 11211), `host:port-k`, or `name-k` (twemproxy
  with a server name), k = 0, 1, ...;
* four points per MD5 digest, each a little-endian u32 of 4 digest bytes;
* key hash: the first 4 bytes of MD5(key), little-endian;
* a key's server: the first point >= its hash, wrapping to the first point.

test_proxy_placement checks this against pylibmc (libmemcached) and a real
nutcracker before other tests rely on it.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import struct


def _f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def points_per_server(weight: int, total_weight: int, nservers: int) -> int:
    pct = _f32(_f32(float(weight)) / _f32(float(total_weight)))
    v = _f32(_f32(_f32(pct * 160.0) / 4.0) * _f32(float(nservers)))
    return int(math.floor(v + 0.0000000001)) * 4


def key_hash(key: bytes) -> int:
    return struct.unpack("<I", hashlib.md5(key).digest()[:4])[0]


class Ring:
    """servers: list of (host, port, weight, name|None). style:
    'libmemcached' (names ignored) or 'twemproxy'."""

    def __init__(self, servers, style: str = "libmemcached"):
        total = sum(s[2] for s in servers)
        pts: list[tuple[int, int]] = []
        for index, (host, port, weight, name) in enumerate(servers):
            n = points_per_server(weight, total, len(servers))
            if style == "twemproxy" and name:
                base = name
            elif port == 11211:
                base = host
            else:
                base = f"{host}:{port}"
            for k in range(n // 4):
                d = hashlib.md5(f"{base}-{k}".encode()).digest()
                for x in range(4):
                    pts.append((struct.unpack("<I", d[x * 4:x * 4 + 4])[0], index))
        pts.sort()
        self.values = [p[0] for p in pts]
        self.owners = [p[1] for p in pts]

    def owner(self, key: str | bytes) -> int:
        if isinstance(key, str):
            key = key.encode()
        i = bisect.bisect_left(self.values, key_hash(key))
        if i == len(self.values):
            i = 0
        return self.owners[i]

    def replica_set(self, key: str | bytes, count: int) -> list[int]:
        """The first `count` distinct servers clockwise from the key's point."""
        if isinstance(key, str):
            key = key.encode()
        i = bisect.bisect_left(self.values, key_hash(key))
        out: list[int] = []
        for step in range(len(self.values)):
            o = self.owners[(i + step) % len(self.values)]
            if o not in out:
                out.append(o)
                if len(out) == count:
                    break
        return out
