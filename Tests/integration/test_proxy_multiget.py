"""Multi-key gets through the proxy: 1,000 keys spread over 3 nodes, asked
in one command with misses and duplicates interleaved. The oracle is a real
memcached holding the same items: the proxy's reply must be byte-identical
(values in request order, duplicates repeated, misses left out, one END).
For gets/gats the CAS uniques differ by server, so they are compared apart:
each must be the unique the proxy's own single-key `gets` reports.
"""

from __future__ import annotations

import random
import re

import pytest

import harness
import proxy_harness as ph


def dataset(n: int = 1000, seed: int = 7):
    rng = random.Random(seed)
    items = []
    for i in range(n):
        size = rng.choice([0, 1, 5, 40, 300, 1500, 4000])
        v = bytes(rng.randrange(256) for _ in range(size))
        if i % 50 == 0:
            v = b"\r\nEND\r\nVALUE fake 0 1\r\n" + v
        items.append((f"mg:{i}:{rng.randrange(10**6)}", i % 17 * 1000, v))
    return items


def request_tokens(items, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    keys = [k for k, _, _ in items]
    toks = keys[:]
    toks += [f"mg:missing:{i}" for i in range(300)]
    toks += [rng.choice(keys) for _ in range(200)]          # duplicates
    rng.shuffle(toks)
    toks = [keys[0], keys[0], *toks, "mg:missing:last"]      # also adjacent duplicates
    return toks


def load(conn: harness.RawConn, items) -> None:
    payload = b"".join(b"set %s %d 0 %d\r\n%s\r\n" % (k.encode(), f, len(v), v) for k, f, v in items)
    conn.send(payload)
    lines = ph.read_lines(conn, len(items), timeout=30)
    assert set(lines) == {b"STORED"}, set(lines)


def ask(conn: harness.RawConn, line: bytes) -> bytes:
    conn.send(line)
    data = conn.read_until(lambda b: ph.count_retrievals(bytes(b)) >= 1, quiet=20, timeout=30)
    return data


CAS_RE = re.compile(rb"^(VALUE \S+ \d+ \d+) (\d+)\r\n", re.M)


@pytest.mark.parametrize("replicas", [1, 2])
def test_multiget_1000_keys_in_request_order(cluster_factory, server_factory, reference_bin, replicas):
    items = dataset()
    toks = request_tokens(items)
    cl = cluster_factory(n=3, replicas=replicas)
    ref = server_factory(binary=reference_bin)
    pc, rc = cl.raw(timeout=30), harness.RawConn(ref.addr, timeout=30)
    try:
        load(pc, items)
        load(rc, items)
        # the keys really are spread: each node holds a share
        spread = [len(cl.node_contents(i, [k for k, _, _ in items])) for i in range(3)]
        assert all(s > 150 for s in spread), spread

        line = b"get " + " ".join(toks).encode() + b"\r\n"
        want, got = ask(rc, line), ask(pc, line)
        want_vals = ph.parse_retrieval(want)[0]
        assert len(want_vals) == 1000 + 200 + 2  # every hit, duplicates repeated
        if got != want:
            got_vals = ph.parse_retrieval(got)
            got_keys = [v[0] for v in got_vals[0]] if got_vals else None
            want_keys = [v[0] for v in want_vals]
            first = next((i for i, (a, b) in enumerate(zip(want_keys, got_keys or [])) if a != b), None)
            pytest.fail(f"multi-get of {len(toks)} keys differs from memcached: memcached {len(want)} bytes "
                        f"{len(want_keys)} values, proxy {len(got)} bytes "
                        f"{len(got_keys) if got_keys is not None else 'unparsable'} values; first different "
                        f"position {first}; proxy tail {got[-200:]!r}")

        # gets: same bytes once the uniques are set aside; each unique is the key's own
        line = b"gets " + " ".join(toks).encode() + b"\r\n"
        want, got = ask(rc, line), ask(pc, line)
        assert CAS_RE.sub(rb"\1 C\r\n", got) == CAS_RE.sub(rb"\1 C\r\n", want), "gets multi-get differs"
        multi_cas = {}
        for k, _f, _v, cas in ph.parse_retrieval(got)[0]:
            assert cas is not None
            assert multi_cas.setdefault(k, cas) == cas, f"{k}: two uniques in one reply"
        sample = list(multi_cas)[::37]
        single = ph.get_each(pc, sample, cmd="gets")
        for k, (vals, end) in zip(sample, single):
            assert end == b"END" and len(vals) == 1
            assert vals[0][3] == multi_cas[k], f"{k}: unique {multi_cas[k]} in the multi-get, {vals[0][3]} alone"

        # gat (touch + get) of many keys: same bytes as memcached
        line = b"gat 1000 " + " ".join(toks[:700]).encode() + b"\r\n"
        assert ask(pc, line) == ask(rc, line), "gat multi-get differs"
    finally:
        rc.close()


def test_pipelined_multigets_keep_order(cluster, server_factory, reference_bin):
    """Several multi-gets, single gets and sets in one send: replies in order."""
    items = dataset(400, seed=3)
    ref = server_factory(binary=reference_bin)
    pc, rc = cluster.raw(timeout=30), harness.RawConn(ref.addr, timeout=30)
    try:
        load(pc, items)
        load(rc, items)
        keys = [k for k, _, _ in items]
        parts = []
        for j in range(6):
            parts.append(b"get " + " ".join(keys[j * 60:(j + 1) * 60] + ["nope"] + keys[:3]).encode() + b"\r\n")
            parts.append(b"get %s\r\n" % keys[-1 - j].encode())
            parts.append(b"set pipe%d 0 0 2\r\nv%d\r\n" % (j, j))
            parts.append(b"get pipe%d %s\r\n" % (j, keys[j].encode()))
        parts.append(b"version\r\n")
        payload = b"".join(parts)

        def read_all(c):
            c.send(payload)
            return c.read_until(lambda b: b.endswith(b"\r\n") and b"\nVERSION " in b[-200:], quiet=20, timeout=30)
        want, got = read_all(rc), read_all(pc)
        want = re.sub(rb"VERSION [^\r]*\r\n$", b"VERSION x\r\n", want)
        got = re.sub(rb"VERSION [^\r]*\r\n$", b"VERSION x\r\n", got)
        assert got == want, f"pipelined replies differ: memcached {len(want)} bytes, proxy {len(got)} bytes"
    finally:
        rc.close()
