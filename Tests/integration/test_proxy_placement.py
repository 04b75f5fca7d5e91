"""Where the proxy puts keys, checked against the real thing.

Oracle: the same keys are first written by the real client/proxy
(pylibmc = libmemcached with KETAMA_WEIGHTED, or a real nutcracker with
`hash: md5, distribution: ketama`) to the same nodes with the value `L`,
and each key's node is read on the nodes directly. Then the proxy writes
the same keys with the value `P` (replicas 1): every key must be found on
exactly one node, with `P`, and no `L` may remain anywhere -- i.e. the
proxy overwrote the copy libmemcached/twemproxy had put there, on the same
node. The tests' own ketama (ketama.py) must agree too (the reload tests
rely on it).

Replicas: with replicas 2, every key is on exactly 2 of the 3 nodes, the
ketama owner and the next distinct node clockwise.
"""

from __future__ import annotations

import collections
import os
import subprocess
import tempfile
import time

import pytest

import harness
import ketama
import proxy_harness as ph
from conftest import require_tool

pylibmc = pytest.importorskip("pylibmc")  # a skip fails the run (conftest)


def placement_keys(n: int, prefix: str = "") -> list[str]:
    """Keys of many shapes (lengths 1..250, punctuation, digits)."""
    out = []
    for i in range(n):
        r = i % 5
        if r == 0:
            out.append(f"{prefix}user:{i}")
        elif r == 1:
            out.append(f"{prefix}{i}")
        elif r == 2:
            out.append(f"{prefix}session/{i:08x}/profile.v2")
        elif r == 3:
            out.append((f"{prefix}long{i}-" + "x" * 240)[:250])
        else:
            out.append(f"{prefix}K_{i}!#$%&'()*+,-.;<=>?@[]^`{{|}}~")
    return out


def only_copy(placement, keys, expect_value: bytes) -> tuple[dict[str, int], list[str]]:
    """key -> node for keys held by exactly one node with expect_value;
    and a list of problems for the others."""
    where, problems = {}, []
    for k in keys:
        holders = placement[k]
        if len(holders) == 1 and holders[0][1] == expect_value:
            where[k] = holders[0][0]
        else:
            problems.append(f"{k!r}: {holders}")
    return where, problems


def report(label: str, keys, expected: dict, got: dict, problems: list[str], n: int) -> str:
    wrong = [k for k in keys if k in expected and k in got and expected[k] != got[k]]
    dist_exp = collections.Counter(expected.values())
    dist_got = collections.Counter(got.values())
    lines = [f"{label}: {len(wrong)} of {len(keys)} keys on another node than the oracle's; "
             f"{len(problems)} keys not on exactly one node",
             f"oracle per node: {[dist_exp.get(i, 0) for i in range(n)]}; proxy per node: "
             f"{[dist_got.get(i, 0) for i in range(n)]}"]
    for k in wrong[:10]:
        lines.append(f"  key {k!r}: oracle node {expected[k]}, proxy node {got[k]}")
    lines += ["  " + p for p in problems[:10]]
    return "\n".join(lines)


def proxy_write_and_compare(cl: ph.Cluster, keys, oracle_where: dict, label: str):
    conn = cl.raw(timeout=10)
    replies = ph.set_many(conn, [(k, b"P") for k in keys])
    assert set(replies) == {b"STORED"}, collections.Counter(replies)
    proxy_where, problems = only_copy(cl.placement(keys), keys, b"P")
    assert not problems and proxy_where == oracle_where, \
        report(label, keys, oracle_where, proxy_where, problems, len(cl.nodes)) + "\n" + cl.describe()


def pylibmc_oracle(cl: ph.Cluster, keys, weights, behaviors) -> dict[str, int]:
    servers = [f"{n.host}:{n.port}:{w}" for n, w in zip(cl.nodes, weights)]
    mc = pylibmc.Client(servers, binary=False, behaviors=behaviors)
    try:
        for s in range(0, len(keys), 500):
            failed = mc.set_multi({k: b"L" for k in keys[s:s + 500]})
            assert not failed, f"pylibmc could not store {failed[:5]}"
    finally:
        mc.disconnect_all()
    where, problems = only_copy(cl.placement(keys), keys, b"L")
    assert not problems, "pylibmc did not put each key on one node:\n" + "\n".join(problems[:10])
    return where


@pytest.mark.parametrize("weights", [(1, 1, 1), (1, 2, 3)], ids=["equal", "weights-1-2-3"])
def test_ketama_weighted_matches_libmemcached(cluster_factory, weights):
    keys = placement_keys(2000)
    cl = cluster_factory(n=3, replicas=1, weights=list(weights))
    oracle = pylibmc_oracle(cl, keys, weights, {"ketama_weighted": True})
    # the tests' own ketama (used by the reload tests) agrees with libmemcached
    ring = ketama.Ring([(n.host, n.port, w, None) for n, w in zip(cl.nodes, weights)])
    own = {k: ring.owner(k) for k in keys}
    assert own == oracle, report("ketama.py vs pylibmc", keys, oracle, own, [], 3)
    proxy_write_and_compare(cl, keys, oracle, f"proxy (hash ketama, weights {weights}) vs pylibmc ketama_weighted")


def test_ketama_classic_matches_libmemcached_plain_ketama(cluster_factory):
    """--hash ketama_classic against libmemcached's MEMCACHED_BEHAVIOR_KETAMA
    (not weighted)."""
    keys = placement_keys(2000)
    cl = cluster_factory(n=3, replicas=1, hash_mode="ketama_classic")
    oracle = pylibmc_oracle(cl, keys, (1, 1, 1), {"ketama": True})
    proxy_write_and_compare(cl, keys, oracle, "proxy (hash ketama_classic) vs pylibmc ketama")


def test_ketama_weighted_port_11211_matches_libmemcached(proxy_bin):
    """The usual production case: every node on port 11211 (different hosts),
    where libmemcached hashes `host-k` instead of `host:port-k`. Run inside a
    network namespace this test creates, whose loopback has 127.0.0.2-4:11211
    free; the proxy, the nodes and pylibmc all work inside it."""
    ok, why = ph.netns_available()
    assert ok, f"cannot create a network namespace here ({why}); this case needs one"
    pair = ph.NetnsPair()
    cl = None
    try:
        pair.create()
        ns = pair.a
        hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        weights = (1, 2, 1)
        cl = ph.Cluster(n=3, replicas=1, weights=list(weights), netns=ns, node_hosts=hosts,
                        node_ports=[11211] * 3, proxy_port=22121)
        keys = placement_keys(1500)

        def oracle_in_ns():
            servers = [f"{h}:11211:{w}" for h, w in zip(hosts, weights)]
            mc = pylibmc.Client(servers, binary=False, behaviors={"ketama_weighted": True})
            try:
                for s in range(0, len(keys), 500):
                    assert not mc.set_multi({k: b"L" for k in keys[s:s + 500]})
            finally:
                mc.disconnect_all()
        ph.run_in_netns(ns, oracle_in_ns)
        oracle, problems = only_copy(cl.placement(keys), keys, b"L")
        assert not problems, problems[:10]
        ring = ketama.Ring([(h, 11211, w, None) for h, w in zip(hosts, weights)])
        own = {k: ring.owner(k) for k in keys}
        assert own == oracle, report("ketama.py vs pylibmc (port 11211)", keys, oracle, own, [], 3)
        proxy_write_and_compare(cl, keys, oracle, "proxy vs pylibmc, nodes on port 11211")
    finally:
        if cl is not None:
            cl.stop()
        pair.delete()


# --------------------------------------------------------------------------
# twemproxy
# --------------------------------------------------------------------------

class Nutcracker:
    def __init__(self, servers: list[str]):
        self.tmpdir = tempfile.mkdtemp(prefix="nutcracker-")
        self.port = harness.free_port()
        stats_port = harness.free_port()
        conf = os.path.join(self.tmpdir, "nutcracker.yml")
        with open(conf, "w") as f:
            f.write("pool:\n"
                    f"  listen: 127.0.0.1:{self.port}\n"
                    "  hash: md5\n"
                    "  distribution: ketama\n"
                    "  auto_eject_hosts: false\n"
                    "  timeout: 5000\n"
                    "  server_connections: 1\n"
                    "  servers:\n" + "".join(f"   - {s}\n" for s in servers))
        self.log_path = os.path.join(self.tmpdir, "nutcracker.log")
        argv = [require_tool("nutcracker"), "-c", conf, "-s", str(stats_port), "-a", "127.0.0.1",
                "-o", self.log_path, "-p", os.path.join(self.tmpdir, "nutcracker.pid")]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, close_fds=True)
        deadline = time.monotonic() + 10
        while True:
            assert self.proc.poll() is None, f"nutcracker exited: {self.log()}"
            try:
                with harness.RawConn((harness.HOST, self.port), timeout=1) as c:
                    if c.request(b"get nutcracker-ready\r\n", timeout=1) == b"END\r\n":
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"nutcracker does not answer: {self.log()}"
            time.sleep(0.05)

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        import shutil
        shutil.rmtree(self.tmpdir, ignore_errors=True)


@pytest.mark.parametrize("weights,names", [
    ((1, 1, 1), None),
    ((1, 2, 3), None),
    ((3, 1, 2), ("alpha", "beta", "gamma")),
], ids=["equal", "weights-1-2-3", "named-weights-3-1-2"])
def test_twemproxy_hash_matches_nutcracker(cluster_factory, reference_bin, weights, names):
    keys = placement_keys(2000)
    cl = cluster_factory(n=3, replicas=1, weights=list(weights), names=list(names) if names else None,
                         hash_mode="twemproxy", node_bin=reference_bin)
    nc = Nutcracker([cl.node_entry(i) for i in range(3)])
    try:
        conn = harness.RawConn((harness.HOST, nc.port), timeout=10)
        try:
            replies = ph.set_many(conn, [(k, b"L") for k in keys], batch=200)
        finally:
            conn.close()
        assert set(replies) == {b"STORED"}, (collections.Counter(replies), nc.log())
    finally:
        nc.stop()
    oracle, problems = only_copy(cl.placement(keys), keys, b"L")
    assert not problems, "nutcracker did not put each key on one node:\n" + "\n".join(problems[:10])
    ring = ketama.Ring([(n.host, n.port, w, (names[i] if names else None))
                        for i, (n, w) in enumerate(zip(cl.nodes, weights))], style="twemproxy")
    own = {k: ring.owner(k) for k in keys}
    assert own == oracle, report("ketama.py (twemproxy) vs nutcracker", keys, oracle, own, [], 3)
    proxy_write_and_compare(cl, keys, oracle, f"proxy --hash twemproxy vs nutcracker ({cl.node_entry(0)}, ...)")


# --------------------------------------------------------------------------
# replicas
# --------------------------------------------------------------------------

def test_replicas_two_each_key_on_exactly_two_nodes(cluster_factory):
    keys = placement_keys(1500, prefix="r2:")
    cl = cluster_factory(n=3, replicas=2)
    assert cl.stats()["proxy_replicas"] == "2"
    conn = cl.raw(timeout=10)
    values = {k: b"v-%d-%s" % (i, k[:5].encode()) for i, k in enumerate(keys)}
    assert set(ph.set_many(conn, values.items())) == {b"STORED"}
    placement = cl.placement(keys)
    ring = ketama.Ring([(n.host, n.port, 1, None) for n in cl.nodes])
    bad = []
    per_node = collections.Counter()
    for k in keys:
        holders = sorted(i for i, _ in placement[k])
        vals = {v for _, v in placement[k]}
        expected = sorted(ring.replica_set(k, 2))
        per_node.update(holders)
        if holders != expected or vals != {values[k]}:
            bad.append(f"{k!r}: on nodes {holders} with {vals}, expected nodes {expected}")
    assert not bad, f"{len(bad)} of {len(keys)} keys misplaced:\n" + "\n".join(bad[:15])
    # every node takes part (2/3 of the keys each, roughly)
    for i in range(3):
        assert 0.4 * len(keys) < per_node[i] < 0.9 * len(keys), per_node
    # and reads through the proxy return every value
    assert ph.multi_get(conn, keys) == values
