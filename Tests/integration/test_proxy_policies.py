"""The proxy's policy options (examples/proxy.yaml), each set in the YAML of
a real cluster and observed on the wire and on the nodes themselves:

* write_policy primary / all: how long a write waits for a stopped replica,
  and that the background copy still reaches it (primary), in order;
* miss_failover: a key held only by the second replica is found (and
  counted as proxy_miss_failovers), or is a miss with the default;
* flush_all false / default: refused with memcached's CLIENT_ERROR (or
  silently with noreply) and the data survives; or every node emptied;
* max_connections: the N+1th client gets memcached's refusal and is closed;
* backend_connections: connections per worker per node (counted on the
  node and in /proc/net/tcp); a session's pipelined set/get stays ordered;
* request_timeout_ms + failure_limit: a stopped node fails reads after the
  timeout (answered from the replica), is down after exactly failure_limit
  timeouts, and comes back with small probe settings;
* flap_window_s: a node that goes down again within the window waits twice
  the base hold (1 s) before serving; outside the window, the base hold;
* item_size_max: a too-large value is refused as memcached -I refuses it;
* hash twemproxy with named nodes (mapping syntax) vs a real nutcracker, and
  keys following a name that moves to another address;
* a reload that removes a node: every key still served (replicas 2), or the
  removed node's keys miss (replicas 1); `stats nodes` lists what is left.

Who owns a key is predicted with ketama.py (checked against libmemcached
and nutcracker by test_proxy_placement.py). Every wait is bounded.
"""

from __future__ import annotations

import collections
import os
import re
import threading
import time

import pytest

import harness
import ketama
import proxy_harness as ph
from test_proxy_placement import Nutcracker, only_copy, placement_keys, report


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def ring_of(cl: ph.Cluster, indices=None, style: str = "libmemcached") -> ketama.Ring:
    idx = range(len(cl.nodes)) if indices is None else indices
    return ketama.Ring([(cl.nodes[i].host, cl.nodes[i].port,
                         cl.node_specs[i]["weight"] or 1, cl.node_specs[i]["name"]) for i in idx],
                       style=style)


def keys_on(cl: ph.Cluster, replica_set: list[int], count: int, prefix: str,
            indices=None) -> list[str]:
    """`count` keys whose replica set (in order, primary first) is exactly
    `replica_set` (indices into `indices`, default all nodes)."""
    ring = ring_of(cl, indices)
    out = []
    for i in range(200_000):
        k = f"{prefix}:{i}"
        if ring.replica_set(k, len(replica_set)) == replica_set:
            out.append(k)
            if len(out) == count:
                return out
    raise AssertionError(f"no {count} keys with replica set {replica_set}")


def set_cmd(key: str, value: bytes, flags: int = 0, exptime: int = 0, noreply: bool = False) -> bytes:
    return b"set %s %d %d %d%s\r\n%s\r\n" % (key.encode(), flags, exptime, len(value),
                                              b" noreply" if noreply else b"", value)


def get_one(conn, key: str, timeout: float = 5.0) -> bytes | None:
    conn.send(b"get %s\r\n" % key.encode())
    [(vals, end)] = ph.read_retrievals(conn, 1, timeout)
    assert end == b"END", f"get {key}: {end!r}"
    return vals[0][2] if vals else None


def settings(cl: ph.Cluster) -> dict[str, str]:
    return cl.stats("settings")


def node_stats(cl: ph.Cluster, i: int) -> dict[str, str]:
    c = cl.node_client(i)
    try:
        return c.stats()
    finally:
        c.close()


def nodes_stat(cl: ph.Cluster, field: str) -> list[str]:
    st = cl.stats("nodes")
    return [st[f"node:{i}:{field}"] for i in range(len(cl.nodes)) if f"node:{i}:{field}" in st]


def _socket_inodes(pid: int) -> set[int]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        m = re.fullmatch(r"socket:\[(\d+)\]", link)
        if m:
            out.add(int(m.group(1)))
    return out


def established_from(pid: int, port: int) -> int:
    """ESTABLISHED TCP connections owned by process `pid` whose remote port is
    `port` (IPv4 loopback): the proxy's connections to one node."""
    inodes = _socket_inodes(pid)
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            rem_port = int(parts[2].split(":")[1], 16)
            if parts[3] == "01" and rem_port == port and int(parts[9]) in inodes:
                n += 1
    return n


# --------------------------------------------------------------------------
# 1. write_policy
# --------------------------------------------------------------------------

def test_write_policy_primary_answers_before_stopped_replica(cluster_factory):
    """write_policy primary: with the second replica SIGSTOPped, writes are
    STORED as soon as the primary answers; after SIGCONT the background copies
    reach the replica, in the order they were written."""
    cl = cluster_factory(n=2, replicas=2, options={"write_policy": "primary", "request_timeout_ms": 3000})
    assert settings(cl)["write_policy"] == "primary"
    [k] = keys_on(cl, [0, 1], 1, "wpp")
    conn = cl.raw(timeout=5)
    assert conn.request(set_cmd(k, b"v1")) == b"STORED\r\n"
    ph.wait_until(lambda: cl.node_contents(1, [k]) == {k: b"v1"}, 3.0, what="first write on the replica")

    cl.sigstop(1)
    stopped_at = time.monotonic()
    try:
        t0 = time.monotonic()
        r2 = conn.request(set_cmd(k, b"v2"), timeout=5)
        t_v2 = time.monotonic() - t0
        t0 = time.monotonic()
        r3 = conn.request(set_cmd(k, b"v3-last"), timeout=5)
        t_v3 = time.monotonic() - t0
        read_while_stopped = get_one(conn, k)
        on_primary = cl.node_contents(0, [k])
        # keep it stopped a while longer than the writes took: they were
        # answered before the replica could have answered anything
        time.sleep(max(0.0, 0.6 - (time.monotonic() - stopped_at)))
        replica_stopped_for = time.monotonic() - stopped_at
    finally:
        cl.sigcont(1)
    print(f"primary policy: set answered in {t_v2 * 1000:.0f} ms and {t_v3 * 1000:.0f} ms "
          f"with the replica stopped for {replica_stopped_for:.2f} s")
    assert (r2, r3) == (b"STORED\r\n", b"STORED\r\n")
    assert t_v2 < 0.3 and t_v3 < 0.3, (t_v2, t_v3)
    assert read_while_stopped == b"v3-last"
    assert on_primary == {k: b"v3-last"}
    # the copies reach the resumed replica; the last write wins there too
    got = ph.wait_until(lambda: (c := cl.node_contents(1, [k])) == {k: b"v3-last"} and c,
                        3.0, what="replica holds the last value written while it was stopped")
    assert got == {k: b"v3-last"}
    st = cl.stats("nodes")
    assert (st["node:1:state"], st["node:1:timeouts"]) == ("up", "0"), st


def test_write_policy_all_waits_for_stopped_replica(cluster_factory):
    """write_policy all (explicit): a write to a SIGSTOPped replica is
    answered only once the replica answers (SIGCONT after 0.6 s), or when
    its request times out (request_timeout_ms 1500)."""
    cl = cluster_factory(n=2, replicas=2, options={"write_policy": "all", "request_timeout_ms": 1500,
                                                   "failure_limit": 5})
    assert settings(cl)["write_policy"] == "all"
    [k] = keys_on(cl, [0, 1], 1, "wpa")
    conn = cl.raw(timeout=5)
    assert conn.request(set_cmd(k, b"v1")) == b"STORED\r\n"

    # a) the replica resumes before the timeout
    cl.sigstop(1)
    try:
        t0 = time.monotonic()
        conn.send(set_cmd(k, b"v2"))
        early = conn.read_until(b"\r\n", quiet=0.6, timeout=0.6)
        resumed_after = time.monotonic() - t0
    finally:
        cl.sigcont(1)
    rest = conn.read_until(b"\r\n", quiet=3, timeout=3)
    t_resume = time.monotonic() - t0
    print(f"all policy: set answered {t_resume:.2f} s after sending, replica resumed at {resumed_after:.2f} s")
    assert early == b"", f"answered {early!r} while the replica was still stopped"
    assert rest == b"STORED\r\n"
    assert resumed_after <= t_resume < resumed_after + 0.5, (resumed_after, t_resume)
    assert cl.node_contents(0, [k]) == {k: b"v2"} and cl.node_contents(1, [k]) == {k: b"v2"}

    # b) the replica stays stopped: answered when its request times out
    before = (cl.stats("nodes"), cl.stats()["proxy_degraded_writes"])
    cl.sigstop(1)
    try:
        t0 = time.monotonic()
        r = conn.request(set_cmd(k, b"v3"), timeout=4)
        t_timeout = time.monotonic() - t0
        during = (cl.stats("nodes"), cl.stats()["proxy_degraded_writes"])
    finally:
        cl.sigcont(1)
    print(f"all policy: set answered after {t_timeout:.2f} s with the replica stopped (request_timeout_ms 1500)")
    assert r == b"STORED\r\n", r
    assert 1.4 <= t_timeout < 2.3, (f"answered after {t_timeout:.3f} s; before the stop (stats nodes, "
                                    f"proxy_degraded_writes): {before}; after the answer: {during}\n"
                                    f"{cl.proxy_log()}")


def test_write_policy_primary_failed_background_write_leaves_no_stale_replica(proxy_bin):
    """write_policy primary, and the background copy to the second replica
    fails (the link to it is cut at the proxy's end, so nothing sent during
    the cut ever arrives; the request times out). The client already got
    STORED: the replica that missed the write must not serve the value it
    replaced later (with `all`, the proxy marks such a node down and flushes
    it before it serves; test_proxy_failover checks that). Here: after the
    heal the primary dies, and a read must not return the old value.

    Namespaces as test_proxy_failover._netns_scenario: A holds the proxy and
    nodes 0, 1; B holds node 2, behind a veth pair 10.233.12.1 <-> .2."""
    ph.require_netns()
    pair = ph.NetnsPair(subnet="10.233.12")
    cl = None
    try:
        pair.create()
        cl = ph.Cluster(n=3, replicas=2, netns=pair.a, node_netns=[pair.a, pair.a, pair.b],
                        node_hosts=[ph.HOST, ph.HOST, pair.b_addr], options={"write_policy": "primary"})
        [k] = keys_on(cl, [0, 2], 1, "wps")      # primary node 0 (A), second replica node 2 (B)
        conn = cl.raw(timeout=10)
        assert conn.request(set_cmd(k, b"OLD")) == b"STORED\r\n"
        ph.wait_until(lambda: cl.placement([k])[k] == [(0, b"OLD"), (2, b"OLD")], 3.0, what="OLD on both")
        pair.cut_near()
        try:
            reply = conn.request(set_cmd(k, b"NEW"), timeout=5)
            time.sleep(0.5 + 0.3)                # request_timeout_ms 500: the copy to node 2 has failed
            states_during = cl.node_states()
        finally:
            pair.heal_near()
        time.sleep(0.3)
        held = dict(cl.placement([k])[k])
        node2 = {f: v for f, v in cl.stats("nodes").items() if f.startswith("node:2:")}
        cl.kill_node(0)
        conn.send(b"get %s\r\n" % k.encode())
        [(vals, end)] = ph.read_retrievals(conn, 1)
        got = vals[0][2] if vals else end
        assert reply == b"STORED\r\n", reply
        assert got != b"OLD", (
            f"`set {k} 0 0 3 NEW` answered STORED (write_policy primary) while the link to its second "
            f"replica node 2 was cut; node states during the cut {states_during}; after the heal the nodes "
            f"hold {held}, node 2 in `stats nodes`: {node2}; with the primary killed, `get {k}` through the "
            f"proxy returns {got!r}: the value the acknowledged write replaced")
    finally:
        if cl is not None:
            cl.stop()
        pair.delete()


# --------------------------------------------------------------------------
# 2. miss_failover
# --------------------------------------------------------------------------

MISS_FAILOVER = pytest.mark.parametrize("enabled", [True, False], ids=["miss_failover-true", "default-false"])


def _miss_failover_cluster(cluster_factory, enabled):
    """3 nodes, replicas 2: `a` and `a2` (replica set [0, 1]) written to node 1
    only, their second replica; `b` (replica set [0, 1]) written to node 2
    only, outside its replica set; `c` (replica set [1, 2]) written through
    the proxy."""
    cl = cluster_factory(n=3, replicas=2, options={"miss_failover": True} if enabled else {})
    assert settings(cl)["miss_failover"] == ("yes" if enabled else "no")
    a, a2 = keys_on(cl, [0, 1], 2, "mfa")
    [b] = keys_on(cl, [0, 1], 1, "mfb")
    [c] = keys_on(cl, [1, 2], 1, "mfc")
    n1, n2 = cl.node_client(1), cl.node_client(2)
    assert n1.set(a, b"only-on-secondary", flags=7) == b"STORED"
    assert n1.set(a2, b"also-on-secondary") == b"STORED"
    assert n2.set(b, b"not-a-replica") == b"STORED"
    conn = cl.raw()
    assert conn.request(set_cmd(c, b"normal")) == b"STORED\r\n"
    assert cl.stats()["proxy_miss_failovers"] == "0"
    return cl, conn, a, a2, b, c


@MISS_FAILOVER
def test_miss_failover_single_key(cluster_factory, enabled):
    """get / gets / mg of one key held only by its second replica: found
    (and counted) with miss_failover true, a miss with the default."""
    cl, conn, a, _a2, b, _c = _miss_failover_cluster(cluster_factory, enabled)
    conn.send(b"get %s\r\n" % a.encode())
    [(vals, end)] = ph.read_retrievals(conn, 1)
    after_get = cl.stats()["proxy_miss_failovers"]
    conn.send(b"gets %s\r\n" % a.encode())
    [(gvals, gend)] = ph.read_retrievals(conn, 1)
    mg = conn.request(b"mg %s v f\r\n" % a.encode(), done=lambda x: x.endswith(b"\r\n") and
                      (x.startswith(b"EN") or x.count(b"\r\n") >= 2))
    miss_b = get_one(conn, b)
    print(f"miss_failover={enabled}: proxy_miss_failovers {after_get} after one get, "
          f"{cl.stats()['proxy_miss_failovers']} after get, gets, mg and a get of a key on no replica")
    assert (end, gend) == (b"END", b"END")
    if enabled:
        assert vals == [(a, 7, b"only-on-secondary", None)]
        assert after_get == "1"
        assert [(k, f, v) for k, f, v, _c in gvals] == [(a, 7, b"only-on-secondary")] and gvals[0][3] is not None
        assert mg == b"VA 17 f7\r\nonly-on-secondary\r\n", mg
    else:
        assert vals == [], f"found {vals} through the proxy with miss_failover off"
        assert after_get == "0"
        assert gvals == []
        assert mg == b"EN\r\n", mg
        assert cl.stats()["proxy_miss_failovers"] == "0"
    # a node outside the key's replica set is never asked
    assert miss_b is None


@MISS_FAILOVER
def test_miss_failover_multi_key(cluster_factory, enabled):
    """The same keys in multi-key get/gets: miss_failover applies to one key
    and to many (docs/protocol.md §2)."""
    cl, conn, a, a2, b, c = _miss_failover_cluster(cluster_factory, enabled)
    out = {}
    for cmd in (f"get {c} {a}", f"get {a} {a2}", f"gets {a2} {c} {b}"):
        conn.send(cmd.encode() + b"\r\n")
        [(vals, end)] = ph.read_retrievals(conn, 1)
        assert end == b"END", (cmd, end)
        out[cmd] = [(k, v) for k, _f, v, _c in vals]
    counter = cl.stats()["proxy_miss_failovers"]
    print(f"miss_failover={enabled}: multi-key replies {out}, proxy_miss_failovers {counter}")
    sa, sa2 = b"only-on-secondary", b"also-on-secondary"
    if enabled:
        want = {f"get {c} {a}": [(c, b"normal"), (a, sa)],
                f"get {a} {a2}": [(a, sa), (a2, sa2)],
                f"gets {a2} {c} {b}": [(a2, sa2), (c, b"normal")]}
    else:
        want = {f"get {c} {a}": [(c, b"normal")],
                f"get {a} {a2}": [],
                f"gets {a2} {c} {b}": [(c, b"normal")]}
    assert out == want, f"multi-key gets with miss_failover={enabled}: got {out}, expected {want}"
    if enabled:
        assert int(counter) >= 4, f"proxy_miss_failovers {counter} after 4 keys found by miss failover"
    else:
        assert counter == "0"


# --------------------------------------------------------------------------
# 3. flush_all
# --------------------------------------------------------------------------

def _write_spread(cl, conn, n=300, prefix="fl"):
    keys = [f"{prefix}:{i}" for i in range(n)]
    values = {k: b"val-%d" % i for i, k in enumerate(keys)}
    assert set(ph.set_many(conn, values.items())) == {b"STORED"}
    per_node = [len(cl.node_contents(i, keys)) for i in range(len(cl.nodes))]
    assert all(x > 0 for x in per_node), per_node
    return keys, values


def test_flush_all_disabled(cluster_factory):
    cl = cluster_factory(n=3, replicas=2, options={"flush_all": False})
    assert settings(cl)["flush_all"] == "no"
    conn = cl.raw()
    keys, values = _write_spread(cl, conn)
    before = [cl.node_contents(i, keys) for i in range(3)]
    replies = [conn.request(cmd) for cmd in (b"flush_all\r\n", b"flush_all 0\r\n", b"flush_all 10\r\n")]
    assert replies == [b"CLIENT_ERROR flush_all not allowed\r\n"] * 3, replies
    # noreply: nothing at all comes back, the next command's reply is next
    after_noreply = conn.request(b"flush_all noreply\r\nversion\r\n", timeout=3)
    assert re.fullmatch(rb"VERSION [^\r\n]+\r\n", after_noreply), after_noreply
    assert not conn.eof
    assert ph.multi_get(conn, keys) == values
    assert [cl.node_contents(i, keys) for i in range(3)] == before, "a node lost data"
    assert all(node_stats(cl, i)["cmd_flush"] == "0" for i in range(3))


def test_flush_all_default_empties_every_node(cluster_factory):
    cl = cluster_factory(n=3, replicas=2)
    assert settings(cl)["flush_all"] == "yes"
    conn = cl.raw()
    keys, _ = _write_spread(cl, conn)
    assert conn.request(b"flush_all\r\n") == b"OK\r\n"
    assert [cl.node_contents(i, keys) for i in range(3)] == [{}, {}, {}]
    assert ph.multi_get(conn, keys) == {}
    # new writes are kept; flush_all noreply answers nothing and flushes
    keys, _ = _write_spread(cl, conn, prefix="fl2")
    after_noreply = conn.request(b"flush_all noreply\r\nversion\r\n", timeout=3)
    assert re.fullmatch(rb"VERSION [^\r\n]+\r\n", after_noreply), after_noreply
    # noreply has no completion point (the proxy answers `version` itself, and
    # our reads go to the nodes directly): the flush reaches them shortly
    ph.wait_until(lambda: [cl.node_contents(i, keys) for i in range(3)] == [{}, {}, {}], 2.0,
                  what="every node empty after flush_all noreply")
    assert [node_stats(cl, i)["cmd_flush"] for i in range(3)] == ["2", "2", "2"]


# --------------------------------------------------------------------------
# 4. max_connections
# --------------------------------------------------------------------------

def test_max_connections(cluster_factory):
    limit = 3
    cl = cluster_factory(n=2, replicas=2, options={"max_connections": limit})
    assert settings(cl)["maxconns"] == str(limit)
    time.sleep(0.2)   # the proxy has seen the stats connection close
    held = [cl.raw(timeout=3) for _ in range(limit)]
    for c in held:
        assert c.request(b"version\r\n").startswith(b"VERSION ")
    extra = cl.raw(timeout=3)
    refusal = extra.read_until(b"\r\n", quiet=2, timeout=2)
    closed = extra.wait_closed(2)
    assert refusal == b"ERROR Too many open connections\r\n", refusal
    assert closed, "the refused connection was left open"
    for c in held:   # the others are not disturbed
        assert c.request(set_cmd("mc", b"x")) == b"STORED\r\n"
    held[0].close()

    # a new connection is served once the proxy has seen that close (retried
    # for a bounded time: the close reaches the proxy asynchronously); kept
    # open, it takes the freed slot
    def a_new_one_works():
        c = cl.raw(timeout=2)
        r = c.request(b"version\r\n", timeout=1)
        if r.startswith(b"VERSION "):
            return c
        c.close()
        return None
    again = ph.wait_until(a_new_one_works, 3.0, interval=0.1, what="a connection after one was closed")
    assert again.request(set_cmd("mc", b"y")) == b"STORED\r\n"
    one_more = cl.raw(timeout=3)
    assert one_more.read_until(b"\r\n", quiet=2, timeout=2) == b"ERROR Too many open connections\r\n"
    assert one_more.wait_closed(2)


# --------------------------------------------------------------------------
# 5. backend_connections
# --------------------------------------------------------------------------

def _conn_offset(node_bin) -> int:
    """What a node's curr_connections says beyond its real client
    connections (memcached counts its listener), measured on a fresh node
    with one client."""
    srv = ph.start_node(node_bin)
    try:
        with harness.TextClient(srv.addr) as c:
            # the start-up check's connection may not be closed on the node
            # yet: stale connections only add, so the least of a few samples
            samples = []
            for _ in range(6):
                samples.append(int(c.stats()["curr_connections"]))
                time.sleep(0.03)
            return min(samples) - 1
    finally:
        srv.stop()


def test_backend_connections_and_session_order(cluster_factory):
    per_worker, threads = 3, 2
    cl = cluster_factory(n=2, replicas=2, threads=threads, options={"backend_connections": per_worker})
    assert settings(cl)["backend_connections"] == "3"
    offset = _conn_offset(cl.node_bin)
    keys = [f"bc:{i}" for i in range(400)]
    values = {k: b"v-" + k.encode() for k in keys}
    clients = [cl.raw(timeout=20) for _ in range(8)]
    assert set(ph.set_many(clients[0], values.items())) == {b"STORED"}
    # 8 clients, each with 400 pipelined gets in flight at once, 3 times
    for _round in range(3):
        for c in clients:
            c.send(b"".join(b"get %s\r\n" % k.encode() for k in keys))
        for c in clients:
            got = ph.read_retrievals(c, len(keys))
            assert [v[0][2] for v, _e in got] == [values[k] for k in keys]
    def count_both():
        out = []
        for i in range(2):
            on_node = int(node_stats(cl, i)["curr_connections"]) - offset - 1   # minus the stats client
            from_proxy = established_from(cl.proxy.pid, cl.nodes[i].port)
            out.append((on_node, from_proxy))
        return out
    # connections the test itself closed may still be counted on a node for a moment
    counts = count_both()
    for _ in range(20):
        if all(a == b for a, b in counts):
            break
        time.sleep(0.05)
        counts = count_both()
    print(f"backend_connections 3, {threads} workers: node curr_connections (proxy's share) / "
          f"proxy sockets per node: {counts}")
    for on_node, from_proxy in counts:
        assert on_node == from_proxy, counts
        assert threads < from_proxy <= threads * per_worker, counts

    # per-session order: set k then get k, pipelined, many rounds, on several
    # connections at once; every get sees its own session's previous set
    def rounds(c, tag, n=300, noreply=False):
        ks = [f"ord:{tag}:{j}" for j in range(4)]
        payload = b"".join(set_cmd(ks[r % 4], b"%s-%d" % (tag.encode(), r), noreply=noreply) +
                           b"get %s\r\n" % ks[r % 4].encode() for r in range(n))
        c.send(payload)
        data = c.read_until(lambda b: b.count(b"END\r\n") >= n, quiet=20, timeout=20)
        got = re.findall(rb"(STORED\r\n)?(?:VALUE \S+ \d+ \d+\r\n([^\r]*)\r\n)?END\r\n", data)
        bad = []
        for r, (stored, v) in enumerate(got):
            want = b"%s-%d" % (tag.encode(), r)
            if v != want or (bool(stored) == noreply):
                bad.append((r, stored, v, want))
        return len(got), bad

    results = {}
    def run(c, tag, noreply):
        results[tag] = rounds(c, tag, noreply=noreply)
    ts = [threading.Thread(target=run, args=(c, f"s{j}", j % 2 == 1)) for j, c in enumerate(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(40)
    assert not any(t.is_alive() for t in ts)
    problems = {tag: r for tag, r in results.items() if r[0] != 300 or r[1]}
    assert len(results) == len(clients) and not problems, \
        {tag: (n, bad[:5]) for tag, (n, bad) in problems.items()}


# --------------------------------------------------------------------------
# 6. request_timeout_ms and failure_limit
# --------------------------------------------------------------------------

def test_request_timeout_and_failure_limit(cluster_factory):
    timeout_ms, limit = 300, 3
    cl = cluster_factory(n=2, replicas=2, options={"request_timeout_ms": timeout_ms, "failure_limit": limit,
                                                   "probe_initial_ms": 50, "probe_max_ms": 400})
    st = settings(cl)
    assert (st["request_timeout_ms"], st["failure_limit"]) == ("300", "3"), st
    keys = keys_on(cl, [0, 1], 8, "rt")
    conn = cl.raw(timeout=5)
    values = {k: b"value-" + k.encode() for k in keys}
    assert set(ph.set_many(conn, values.items())) == {b"STORED"}
    assert [get_one(conn, k) for k in keys] == [values[k] for k in keys]

    seen = []
    cl.sigstop(0)
    try:
        for k in keys[:limit + 2]:
            t0 = time.monotonic()
            v = get_one(conn, k)
            el = time.monotonic() - t0
            seen.append((k, v, round(el, 3), cl.node_states()[0]))
        stats_down = cl.stats("nodes")
    finally:
        cl.sigcont(0)
    t_cont = time.monotonic()
    print("reads with node 0 stopped (key, value, seconds, node 0 state after):\n  " +
          "\n  ".join(map(str, seen)))
    assert [v for _k, v, _e, _s in seen] == [values[k] for k, *_ in seen]
    # the first `limit` reads wait for the timeout, then the replica answers
    for _k, _v, el, _s in seen[:limit]:
        assert timeout_ms / 1000 * 0.9 <= el < timeout_ms / 1000 + 0.35, seen
    # up until the limit is reached, down after exactly `limit` timeouts
    assert [s for *_x, s in seen[:limit - 1]] == ["up"] * (limit - 1), seen
    assert seen[limit - 1][3] == "down", seen
    # once down, reads go to the replica at once
    for _k, _v, el, s in seen[limit:]:
        assert el < 0.1 and s == "down", seen
    assert (stats_down["node:0:timeouts"], stats_down["node:0:marked_down"]) == (str(limit), "1"), stats_down
    # SIGCONT: back up within probe delay + hold (1 s) + flush
    ph.wait_until(lambda: cl.node_states()[0] == "up", 5.0, what="node 0 up after SIGCONT")
    t_up = time.monotonic() - t_cont
    print(f"node 0 up {t_up:.2f} s after SIGCONT")
    assert t_up < 3.0
    assert [get_one(conn, k) for k in keys] == [values[k] for k in keys]


# --------------------------------------------------------------------------
# 7. flap damping
# --------------------------------------------------------------------------

def test_flap_window_doubles_hold(cluster_factory):
    window = 2
    cl = cluster_factory(n=2, replicas=2, options={"flap_window_s": window, "failure_limit": 1,
                                                   "request_timeout_ms": 300,
                                                   "probe_initial_ms": 50, "probe_max_ms": 100})
    assert settings(cl)["flap_window_s"] == str(window)
    keys = keys_on(cl, [0, 1], 20, "fw")
    conn = cl.raw(timeout=5)
    assert set(ph.set_many(conn, [(k, b"x") for k in keys])) == {b"STORED"}

    def outage() -> tuple[float, float]:
        cl.kill_node(0)
        t_kill = time.monotonic()
        def down():
            ph.get_each(conn, keys[:5])
            return cl.node_states()[0] == "down"
        ph.wait_until(down, 3.0, interval=0.02, what="node 0 down after kill -9")
        cl.restart_node(0)
        t0 = time.monotonic()
        ph.wait_until(lambda: cl.node_states()[0] == "up", 8.0, interval=0.02, what="node 0 up")
        return time.monotonic() - t0, time.monotonic() - t_kill

    first, _ = outage()           # base hold, 1 s
    second, _ = outage()          # down again just after coming back: within the window
    up_at = time.monotonic()
    time.sleep(max(0.0, window + 0.3 - (time.monotonic() - up_at)))
    third, _ = outage()           # outside the window: base hold again
    log = cl.proxy_log()
    flapping = [ln for ln in log.splitlines() if "flapping" in ln]
    print(f"restart -> up: {first:.2f} s, {second:.2f} s (flapping), {third:.2f} s (after the window)")
    print("\n".join(ln for ln in log.splitlines() if "node" in ln))
    assert 0.95 <= first < 1.6, (first, log)
    assert 1.95 <= second < 2.6, (second, log)
    assert 0.95 <= third < 1.6, (third, log)
    assert len(flapping) == 1, log
    assert [get_one(conn, k) for k in keys[:5]] == [b"x"] * 5


# --------------------------------------------------------------------------
# 8. item_size_max
# --------------------------------------------------------------------------

ITEM_SIZE_CASES = [
    # (bytes sent, reply expected), validated against memcached -I 2k below
    (set_cmd("small", b"s" * 1500), b"STORED\r\n"),
    (b"get small\r\n", b"VALUE small 0 1500\r\n" + b"s" * 1500 + b"\r\nEND\r\n"),
    # the data holds commands: swallowed, none of them run
    (set_cmd("big", (b"set evil 0 0 1\r\nX\r\n" * 200)[:3000]), b"SERVER_ERROR object too large for cache\r\n"),
    (b"get big evil\r\n", b"END\r\n"),
    # a failed set removes the key's old value (memcached does)
    (set_cmd("small", b"b" * 3000), b"SERVER_ERROR object too large for cache\r\n"),
    (b"get small\r\n", b"END\r\n"),
    (set_cmd("quiet", b"q" * 3000, noreply=True), b""),
    (set_cmd("ok", b"o" * 1500), b"STORED\r\n"),
    (b"get ok quiet\r\n", b"VALUE ok 0 1500\r\n" + b"o" * 1500 + b"\r\nEND\r\n"),
]


def _run_cases(conn, split) -> list[bytes]:
    out = []
    for payload, _want in ITEM_SIZE_CASES:
        conn.send(payload + b"mn\r\n", split=split)
        out.append(conn.read_until(lambda b: b.endswith(b"MN\r\n"), quiet=5, timeout=5)[:-4])
    return out


def test_item_size_max(cluster_factory, server_factory, reference_bin):
    cl = cluster_factory(n=2, replicas=2, options={"item_size_max": "2k"})
    assert settings(cl)["item_size_max"] == "2048"
    want = [w for _p, w in ITEM_SIZE_CASES]
    ref = server_factory(["-I", "2k", "-o", "slab_chunk_max=1024"], binary=reference_bin)
    with harness.RawConn(ref.addr) as rc:
        assert _run_cases(rc, None) == want, "memcached -I 2k disagrees with the expectations"
    for split in (None, [20, 1000, 2500]):   # in one piece, and cut inside the data
        conn = cl.raw()
        got = _run_cases(conn, split)
        bad = [(p[:40], w[:60], g[:60]) for (p, w), g in zip(ITEM_SIZE_CASES, got) if g != w]
        assert not bad, f"split {split}: (sent, expected, got) {bad}"
        assert not conn.eof
    # nothing too large reached a node
    assert all(cl.node_contents(i, ["big", "evil", "quiet"]) == {} for i in range(2))


# --------------------------------------------------------------------------
# 9. hash: twemproxy with named nodes
# --------------------------------------------------------------------------

def test_twemproxy_named_nodes_mapping_syntax_matches_nutcracker(cluster_factory, reference_bin):
    """Names and weights given as YAML mappings (address/weight/name); keys
    land where nutcracker, given the same servers as `host:port:weight name`,
    puts them."""
    weights, names = (2, 1, 3), ("cache-a", "cache-b", "cache-c")
    keys = placement_keys(1500, prefix="tw:")
    cl = cluster_factory(n=3, replicas=1, weights=list(weights), names=list(names),
                         hash_mode="twemproxy", node_bin=reference_bin, node_style="mapping")
    assert "name: \"cache-a\"" in open(cl.config_path).read()
    st = cl.stats("nodes")
    assert [st.get(f"node:{i}:name") for i in range(3)] == list(names), st
    servers = [f"{cl.nodes[i].host}:{cl.nodes[i].port}:{weights[i]} {names[i]}" for i in range(3)]
    nc = Nutcracker(servers)
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
    assert not problems, problems[:10]
    conn = cl.raw(timeout=10)
    assert set(ph.set_many(conn, [(k, b"P") for k in keys])) == {b"STORED"}
    got, problems = only_copy(cl.placement(keys), keys, b"P")
    assert not problems and got == oracle, report("proxy (mapping names) vs nutcracker", keys, oracle, got,
                                                  problems, 3)


def test_twemproxy_names_move_with_their_keys(cluster_factory, reference_bin):
    """Named nodes are placed by name: a reload that gives the names other
    addresses (here rotated among the three nodes) moves every key to the
    address its name now has, as the twemproxy ring predicts."""
    names = ["alpha", "beta", "gamma"]
    keys = placement_keys(1200, prefix="mv:")
    # warmup_s 0: the change is over at once, so a write reaches the new owner alone
    cl = cluster_factory(n=3, replicas=1, names=names, hash_mode="twemproxy", node_bin=reference_bin,
                         options={"warmup_s": 0})
    ring = ketama.Ring([("h", 0, 1, n) for n in names], style="twemproxy")   # addresses play no part
    owner_name = {k: ring.owner(k) for k in keys}
    conn = cl.raw(timeout=10)
    assert set(ph.set_many(conn, [(k, b"1") for k in keys])) == {b"STORED"}
    where, problems = only_copy(cl.placement(keys), keys, b"1")
    assert not problems and where == owner_name, report("before", keys, owner_name, where, problems, 3)
    # alpha -> node 1's address, beta -> node 2's, gamma -> node 0's
    rotated = [f"{cl.node_addr((i + 1) % 3)} {names[i]}" for i in range(3)]
    cl.write_config(raw=ph.render_config(cl.options, rotated))
    cl.sighup()
    ph.wait_until(lambda: cl.stats().get("proxy_reloads") == "1", 5.0, what="reload")
    for i in range(3):
        cl.node_client(i).line("flush_all")
    assert set(ph.set_many(conn, [(k, b"2") for k in keys])) == {b"STORED"}
    where, problems = only_copy(cl.placement(keys), keys, b"2")
    want = {k: (owner_name[k] + 1) % 3 for k in keys}
    assert not problems and where == want, report("after rotating names", keys, want, where, problems, 3)


# --------------------------------------------------------------------------
# 10. removing a node on reload
# --------------------------------------------------------------------------

def _reload_to(cl, indices):
    cl.write_config(list(indices))
    cl.sighup()
    return ph.wait_until(lambda: (s := cl.stats()).get("proxy_reloads") == "1" and s, 5.0, what="reload")


def _wait_change_over(cl):
    ph.wait_until(lambda: cl.stats()["proxy_membership_phase"] == "stable", 10.0, what="the membership change to end")


def test_reload_removing_a_node_replicas2_keeps_every_key(cluster_factory):
    cl = cluster_factory(n=3, replicas=2, options={"warmup_s": 1})
    keys = [f"rm:{i}" for i in range(1500)]
    values = {k: b"value-%d" % i for i, k in enumerate(keys)}
    conn = cl.raw(timeout=20)
    assert set(ph.set_many(conn, values.items())) == {b"STORED"}
    ring3 = ring_of(cl)
    on_removed = [k for k in keys if 2 in ring3.replica_set(k, 2)]
    primary_removed = [k for k in keys if ring3.owner(k) == 2]
    assert len(primary_removed) > 300
    # reload to nodes 0 and 1 with a pipeline of gets in flight
    cl.write_config([0, 1])
    conn.send(b"".join(b"get %s\r\n" % k.encode() for k in keys))
    cl.sighup()
    inflight = ph.read_retrievals(conn, len(keys), timeout=30)
    bad_inflight = [k for k, (v, e) in zip(keys, inflight) if e != b"END" or not v or v[0][2] != values[k]]
    st = ph.wait_until(lambda: (s := cl.stats()).get("proxy_reloads") == "1" and s, 5.0, what="reload")
    nodes = cl.stats("nodes")
    assert st["proxy_nodes"] == "2" and st["proxy_reload_failures"] == "0", st
    # while the change is under way the node removed is still listed, leaving
    assert [nodes[f"node:{i}:membership"] for i in range(3)] == ["member", "member", "leaving"], nodes
    assert [nodes["node:0:address"], nodes["node:1:address"]] == [cl.node_addr(0), cl.node_addr(1)]
    assert not bad_inflight, f"{len(bad_inflight)} in-flight gets failed across the reload: {bad_inflight[:10]}"
    # every key, by single gets and by multi-gets
    single = ph.get_each(conn, keys)
    missing = [k for k, (v, e) in zip(keys, single) if e != b"END" or not v or v[0][2] != values[k]]
    assert not missing, (f"{len(missing)} of {len(keys)} keys not readable after removing node 2 "
                         f"({len([k for k in missing if k in primary_removed])} had it as primary): {missing[:10]}")
    assert ph.multi_get(conn, keys, batch=250) == values
    # once the change is over the removed node gets no more traffic; writes go to the two left
    _wait_change_over(cl)
    nodes = cl.stats("nodes")
    assert sorted({k.split(":")[1] for k in nodes if k.startswith("node:")}) == ["0", "1"], nodes
    removed = node_stats(cl, 2)
    assert set(ph.set_many(conn, [(k, b"new") for k in on_removed[:200]])) == {b"STORED"}
    assert ph.multi_get(conn, keys)
    after = node_stats(cl, 2)
    assert [after[f] for f in ("cmd_get", "cmd_set", "cmd_touch")] == [removed[f] for f in ("cmd_get", "cmd_set", "cmd_touch")]
    pl = cl.placement(on_removed[:200])
    assert all(sorted(i for i, v in pl[k] if v == b"new") == [0, 1] for k in on_removed[:200])


def test_reload_removing_a_node_replicas1_serves_its_keys_during_the_warm_up(cluster_factory):
    """With one replica, the removed node's keys are copied from it on a miss
    while the change warms up; a key nobody read by then is a miss afterwards
    (nothing drains the node first)."""
    cl = cluster_factory(n=3, replicas=1, options={"warmup_s": 2})
    keys = [f"rm1:{i}" for i in range(900)]
    values = {k: b"v%d" % i for i, k in enumerate(keys)}
    conn = cl.raw(timeout=20)
    assert set(ph.set_many(conn, values.items())) == {b"STORED"}
    ring3 = ring_of(cl)
    moved = sorted(k for k in keys if ring3.owner(k) == 2)
    read_early, read_late = moved[::2], moved[1::2]
    _reload_to(cl, [0, 1])
    assert cl.stats()["proxy_nodes"] == "2"
    got = ph.multi_get(conn, [k for k in keys if k not in set(read_late)])
    assert got == {k: values[k] for k in keys if k not in set(read_late)}
    _wait_change_over(cl)
    assert ph.multi_get(conn, read_early) == {k: values[k] for k in read_early}
    late = ph.get_each(conn, read_late)
    assert all(e == b"END" and not v for v, e in late), late[:5]


def test_reload_removing_a_node_closes_its_connections(cluster_factory):
    """Once the change is over the proxy lets go of the removed node (an
    operator decommissions it next): no proxy connection to it remains."""
    cl = cluster_factory(n=3, replicas=2, options={"warmup_s": 1})
    conn = cl.raw(timeout=10)
    keys = [f"rc:{i}" for i in range(300)]
    assert set(ph.set_many(conn, [(k, b"x") for k in keys])) == {b"STORED"}
    assert established_from(cl.proxy.pid, cl.nodes[2].port) >= 1
    _reload_to(cl, [0, 1])
    assert ph.multi_get(conn, keys) == {k: b"x" for k in keys}
    _wait_change_over(cl)
    try:
        ph.wait_until(lambda: established_from(cl.proxy.pid, cl.nodes[2].port) == 0, 3.0,
                      what="proxy connections to the removed node closed")
    except TimeoutError:
        n = established_from(cl.proxy.pid, cl.nodes[2].port)
        pytest.fail(f"3 s after the reload the proxy still holds {n} connection(s) to the removed node "
                    f"{cl.node_addr(2)} (node curr_connections {node_stats(cl, 2)['curr_connections']})")
