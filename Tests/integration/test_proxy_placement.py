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
    ph.require_netns()
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
    def __init__(self, servers: list[str], hash_name: str = "md5", conf_text: str | None = None,
                 port: int | None = None):
        """One pool over `servers`, or `conf_text` as the whole file (listening on `port`)."""
        self.tmpdir = tempfile.mkdtemp(prefix="nutcracker-")
        self.port = port or harness.free_port()
        stats_port = harness.free_port()
        self.conf = os.path.join(self.tmpdir, "nutcracker.yml")
        with open(self.conf, "w") as f:
            f.write(conf_text or ("pool:\n"
                                  f"  listen: 127.0.0.1:{self.port}\n"
                                  f"  hash: {hash_name}\n"
                                  "  distribution: ketama\n"
                                  "  auto_eject_hosts: false\n"
                                  "  timeout: 5000\n"
                                  "  server_connections: 1\n"
                                  "  servers:\n" + "".join(f"   - {s}\n" for s in servers)))
        conf = self.conf
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


def _owners_of_raw_keys(cl: ph.Cluster, keys: list[bytes], value: bytes) -> dict[bytes, int]:
    """key -> the one node holding it with `value` (asked on each node directly)."""
    owners: dict[bytes, list[int]] = {k: [] for k in keys}
    for i in range(len(cl.nodes)):
        c = cl.node_client(i, timeout=10).conn
        for k in keys:
            if c.request(b"get " + k + b"\r\n", done=b"END\r\n").startswith(b"VALUE " + k + b" 0 %d\r\n" % len(value) + value):
                owners[k].append(i)
    assert all(len(v) == 1 for v in owners.values()), {k: v for k, v in owners.items() if len(v) != 1}
    return {k: v[0] for k, v in owners.items()}


@pytest.mark.parametrize("key_hash", ["fnv1a_64", "fnv1_64", "fnv1a_32", "fnv1_32", "one_at_a_time", "crc32a",
                                      "crc32", "murmur"])
def test_twemproxy_key_hashes_match_nutcracker(cluster_factory, reference_bin, key_hash):
    """nutcracker's other `hash:` functions (its example configuration uses
    fnv1a_64). Keys with bytes 0x80-0xFF too: nutcracker reads them through a
    signed char."""
    keys = placement_keys(1500)
    high = [b"k\xe9y-%d-\xff\x80\xc3\xa9" % i for i in range(120)]
    cl = cluster_factory(n=3, replicas=1, weights=[1, 1, 1], hash_mode="twemproxy", node_bin=reference_bin,
                         options={"key_hash": key_hash})
    nc = Nutcracker([cl.node_entry(i) for i in range(3)], hash_name=key_hash)
    try:
        conn = harness.RawConn((harness.HOST, nc.port), timeout=10)
        try:
            replies = ph.set_many(conn, [(k, b"L") for k in keys], batch=200)
            for k in high:
                replies.append(conn.request(b"set " + k + b" 0 0 1\r\nL\r\n").strip())
        finally:
            conn.close()
        assert set(replies) == {b"STORED"}, (collections.Counter(replies), nc.log())
    finally:
        nc.stop()
    oracle, problems = only_copy(cl.placement(keys), keys, b"L")
    assert not problems, "nutcracker did not put each key on one node:\n" + "\n".join(problems[:10])
    # (crc32 gives 15-bit values, which 32-bit ketama points put in one arc:
    # nutcracker then sends every key to one node, and so must the proxy.)
    assert len(set(oracle.values())) == (1 if key_hash == "crc32" else 3), "the keys spread as nutcracker spreads them"
    oracle_high = _owners_of_raw_keys(cl, high, b"L")
    proxy_write_and_compare(cl, keys, oracle, f"proxy key_hash {key_hash} vs nutcracker")
    proxy = cl.raw(timeout=10)
    for k in high:
        assert proxy.request(b"set " + k + b" 0 0 1\r\nP\r\n") == b"STORED\r\n"
    assert _owners_of_raw_keys(cl, high, b"P") == oracle_high, f"keys with high bytes placed unlike nutcracker ({key_hash})"


def _from_nutcracker(proxy_bin: str, path: str) -> subprocess.CompletedProcess:
    return subprocess.run([proxy_bin, "--from-nutcracker", path], capture_output=True, text=True, timeout=30)


def test_from_nutcracker_takes_over_without_moving_a_key(cluster_factory, reference_bin, proxy_bin):
    """The migration the README gives: convert nutcracker's file, stop
    nutcracker, start the proxy on its port; every key nutcracker wrote is
    found. The file is written the way deployments write it: nutcracker's
    default hash (no `hash:` line), weights, server names, options without an
    equivalent, and a redis pool beside the memcache one."""
    cl = cluster_factory(n=3, replicas=1, node_bin=reference_bin, start_proxy=False)
    port = harness.free_port()
    servers = [f"{cl.node_addr(i)}:{w} cache-{i}" for i, w in enumerate((1, 2, 1))]
    conf = ("sessions:\n"
            "  listen: 127.0.0.1:%d\n"
            "  redis: true\n"
            "  servers:\n"
            "   - 127.0.0.1:6379:1\n"
            "web:\n"
            f"  listen: 127.0.0.1:{port}\n"
            "  distribution: ketama\n"
            "  timeout: 4000\n"
            "  backlog: 512\n"
            "  preconnect: true\n"
            "  auto_eject_hosts: false\n"
            "  server_retry_timeout: 30000\n"
            "  server_failure_limit: 2\n"
            "  server_connections: 1\n"
            "  servers:\n" + "".join(f"   - {s}\n" for s in servers)) % harness.free_port()
    keys = placement_keys(2000, prefix="migrate-")
    nc = Nutcracker([], conf_text=conf, port=port)
    try:
        conn = harness.RawConn((harness.HOST, port), timeout=10)
        try:
            replies = ph.set_many(conn, [(k, b"v-" + k.encode()) for k in keys], batch=200)
        finally:
            conn.close()
        assert set(replies) == {b"STORED"}, (collections.Counter(replies), nc.log())
        converted = _from_nutcracker(proxy_bin, nc.conf)
    finally:
        nc.stop()
    assert converted.returncode == 0, converted
    assert "pool sessions is not converted: redis: true" in converted.stderr, converted.stderr
    [refused, web] = converted.stdout.split("---\n")
    assert refused.startswith("# pool sessions is not converted"), refused
    for expected in ("hash: twemproxy", "key_hash: fnv1a_64", "request_timeout_ms: 4000", "failure_limit: 2",
                     "probe_initial_ms: 30000", "probe_max_ms: 30000", "backend_connections: 1", "# backlog: 512 is left out",
                     "# preconnect: true is left out", *(f"  - {s}" for s in servers)):
        assert expected in web, f"{expected!r} missing from:\n{web}"
    cl.write_config(raw=web)
    cl.proxy = ph.spawn([proxy_bin, "--config", cl.config_path], harness.HOST, port, prefix="mcproxy-")
    found = ph.multi_get(cl.raw(timeout=20), keys)
    missing = [k for k in keys if found.get(k) != b"v-" + k.encode()]
    assert not missing, f"{len(missing)} of {len(keys)} keys not found after the switch, e.g. {missing[:5]}"


NUTCRACKER_EXAMPLE = "/usr/share/doc/nutcracker/examples/nutcracker.yml"


def test_from_nutcracker_on_nutcrackers_own_example(proxy_bin, tmp_path):
    """Debian's nutcracker package ships its example file: two redis pools, two
    memcache pools and one on a unix socket with the hsieh hash. The memcache
    pools convert and load; the others are refused, each with its reasons."""
    if not os.path.isfile(NUTCRACKER_EXAMPLE):
        pytest.fail(f"{NUTCRACKER_EXAMPLE} is missing (it comes with Debian's nutcracker package)")
    result = _from_nutcracker(proxy_bin, NUTCRACKER_EXAMPLE)
    assert result.returncode == 0, result
    documents = result.stdout.split("---\n")
    assert len(documents) == 5, result.stdout
    by_pool = {d.split("\n", 1)[0].split()[2].rstrip(","): d for d in documents}
    assert sorted(by_pool) == ["alpha", "beta", "delta", "gamma", "omega"], list(by_pool)
    assert "redis: true" in by_pool["alpha"] and "nodes:" not in by_pool["alpha"]
    assert "hash_tag" in by_pool["beta"] and "nodes:" not in by_pool["beta"]
    assert "unix socket" in by_pool["omega"] and "hash hsieh" in by_pool["omega"]
    assert sorted(line.split(" is not converted")[0] for line in result.stderr.splitlines()) == \
        ["pool alpha", "pool beta", "pool omega"], result.stderr
    for name, node_count in (("gamma", 2), ("delta", 10)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(by_pool[name])
        check = subprocess.run([proxy_bin, "--config", str(path), "--check-config"], capture_output=True,
                               text=True, timeout=30)
        listed = [line for line in check.stdout.splitlines() if line.startswith("  - ")]
        assert check.returncode == 0 and len(listed) == node_count, (name, check, by_pool[name])
        assert "key_hash: fnv1a_64" in by_pool[name]


@pytest.mark.parametrize("conf,refusal", [
    ("p:\n  listen: /tmp/mc.sock\n  servers:\n   - 127.0.0.1:11211:1\n", "a unix socket"),
    ("p:\n  listen: 127.0.0.1:22121\n  hash: hsieh\n  servers:\n   - 127.0.0.1:11211:1\n", "hash hsieh"),
    ("p:\n  listen: 127.0.0.1:22121\n  distribution: modula\n  servers:\n   - 127.0.0.1:11211:1\n",
     "distribution modula"),
    ("p:\n  listen: 127.0.0.1:22121\n  hash_tag: \"{}\"\n  servers:\n   - 127.0.0.1:11211:1\n", "hash_tag {}"),
    ("p:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:port:1\n", "not host:port:weight"),
    ("p:\n  listen: 127.0.0.1:22121\n  server_failure_limit: 0\n  servers:\n   - 127.0.0.1:11211:1\n",
     "failure_limit: expected an integer"),
    ("p:\n  listen: 127.0.0.1:22121\n  tls: true\n  servers:\n   - 127.0.0.1:11211:1\n", "tls: an option"),
    ("p:\n  listen: 127.0.0.1:22121\n", "no servers"),
])
def test_from_nutcracker_refuses_what_would_move_keys(proxy_bin, tmp_path, conf, refusal):
    """A pool the proxy cannot serve as nutcracker did is not converted: the
    reason on standard error and as a comment, exit status 1 when no pool is left."""
    path = tmp_path / "nutcracker.yml"
    path.write_text(conf)
    result = _from_nutcracker(proxy_bin, str(path))
    assert result.returncode == 1, result
    assert refusal in result.stderr and refusal in result.stdout, result
    assert "nodes:" not in result.stdout


def test_from_nutcracker_refuses_a_file_that_is_not_a_nutcracker_configuration(proxy_bin, tmp_path):
    path = tmp_path / "nutcracker.yml"
    path.write_text("- just\n- a list\n")
    result = _from_nutcracker(proxy_bin, str(path))
    assert result.returncode != 0 and "mapping of pools" in result.stderr, result
    result = _from_nutcracker(proxy_bin, str(tmp_path / "absent.yml"))
    assert result.returncode != 0 and "absent.yml" in result.stderr, result


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
