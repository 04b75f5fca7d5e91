"""The proxy's `stats` and `/metrics`.

`stats` answers with memcached's field names (what memcstat, client
libraries' get_stats and memcached exporters read) and its counters move as
memcached's do for the same commands; `stats nodes` shows each node;
`/metrics` is Prometheus text with a per-node `memcluster_proxy_node_up` and
latency histograms; `/health` and `/ready` are the probes.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

import proxy_harness as ph
import test_stats
from conftest import require_tool

# What test_stats.py requires of the node (docs/protocol.md §9: the fields
# clients and monitoring read); the proxy is what those clients now talk to.
MUST_HAVE = test_stats.MUST_HAVE

# The ones a proxy counts itself rather than summing its nodes'.
CORE = """pid uptime time version pointer_size rusage_user rusage_system
curr_connections total_connections max_connections threads cmd_get cmd_set
cmd_flush cmd_touch get_hits get_misses bytes_read bytes_written""".split()

INT = re.compile(r"^\d+$")
FLOAT = re.compile(r"^\d+\.\d+$")


def check_value(name: str, value: str):
    if name == "version":
        assert value.strip()
    elif name.startswith("rusage_"):
        assert FLOAT.match(value), f"{name}={value!r}"
    else:
        assert INT.match(value), f"{name}={value!r} is not an unsigned integer"


def test_stats_core_fields(cluster):
    c = cluster.client()
    st = c.stats()
    missing = [f for f in CORE if f not in st]
    assert not missing, f"proxy stats lacks {missing}"
    for f in CORE:
        check_value(f, st[f])
    assert int(st["pid"]) == cluster.proxy.pid
    assert 0 <= int(st["uptime"]) < 60
    assert abs(int(st["time"]) - time.time()) < 5
    assert int(st["threads"]) == 2
    raw = c.block("stats")
    lines = raw.split(b"\r\n")
    assert lines[-2:] == [b"END", b""]
    assert all(ln.startswith(b"STAT ") and len(ln.split(b" ")) >= 3 for ln in lines[:-2])


def test_stats_has_every_must_have_memcached_field(cluster):
    st = cluster.stats()
    missing = [f for f in MUST_HAVE if f not in st]
    assert not missing, (f"proxy `stats` lacks {len(missing)} of the {len(MUST_HAVE)} fields docs/protocol.md §9 "
                         f"lists as must-have for clients and monitoring: {' '.join(missing)}")


def test_counters_move_like_memcached(cluster):
    c = cluster.client()
    c.set("s1", b"a")
    c.set("s2", b"b")
    before = c.stats()
    assert c.block("get s1 s2 nope1 nope2 s1") .count(b"VALUE") == 3
    assert c.get("nope3") is None
    assert c.set("s3", b"c") == b"STORED"
    assert c.line("touch s1 100") == b"TOUCHED"
    assert c.line("flush_all") == b"OK"
    after = c.stats()
    delta = {k: int(after[k]) - int(before[k]) for k in
             ("cmd_get", "get_hits", "get_misses", "cmd_set", "cmd_touch", "cmd_flush")}
    assert delta == {"cmd_get": 6, "get_hits": 3, "get_misses": 3, "cmd_set": 1, "cmd_touch": 1,
                     "cmd_flush": 1}, delta
    assert int(after["bytes_read"]) > int(before["bytes_read"])
    assert int(after["bytes_written"]) > int(before["bytes_written"])


def test_connection_counts(cluster):
    def curr():
        return int(cluster.stats()["curr_connections"])   # counts the stats connection itself

    # Each count is read on a new connection; the one before may still be
    # closing on another worker, so a count can be one too high for a moment:
    # the least of a few samples is the base, and later counts are waited for.
    ph.wait_until(lambda: (a := curr()) == curr() and a, 5, interval=0.2, what="a steady count")
    base = min(curr() for _ in range(5))
    total = int(cluster.stats()["total_connections"])
    extra = [cluster.raw() for _ in range(5)]
    for e in extra:
        assert e.request(b"version\r\n").startswith(b"VERSION")
    ph.wait_until(lambda: curr() == base + 5, 5, what=f"curr_connections {base + 5} with 5 more clients")
    st = cluster.stats()
    assert int(st["total_connections"]) >= total + 6
    for e in extra:
        e.close()
    ph.wait_until(lambda: curr() == base, 5, what=f"curr_connections back to {base}")


def test_pipelined_stats_counts_commands_before_it(cluster):
    """memcached runs a pipeline in order: a `stats` after a get in the same
    packet already counts that get's hits and misses."""
    c = cluster.raw()
    assert c.request(b"set p1 0 0 1\r\nx\r\n") == b"STORED\r\n"
    before = cluster.stats()
    c.send(b"get p1 nope-a nope-b\r\nstats\r\n")
    r = c.read_until(lambda b: b.count(b"END\r\n") >= 2, timeout=5)
    st = dict(ln.split(b" ", 2)[1:] for ln in r.split(b"\r\n") if ln.startswith(b"STAT "))
    got = {k: int(st[k.encode()]) - int(before[k]) for k in ("cmd_get", "get_hits", "get_misses")}
    assert got == {"cmd_get": 3, "get_hits": 1, "get_misses": 2}, \
        f"stats sent right after `get p1 nope-a nope-b` in one packet shows {got}"


def test_stats_nodes(cluster_factory):
    cl = cluster_factory(n=3, replicas=2, weights=[1, 2, 1], names=[None, "beta", None])
    st = cl.stats("nodes")
    for i in range(3):
        assert st[f"node:{i}:address"] == cl.node_addr(i)
        assert st[f"node:{i}:state"] == "up"
    assert st["node:1:weight"] == "2" and st["node:1:name"] == "beta"
    assert [int(st[f"node:{i}:points"]) for i in range(3)] == [120, 240, 120]


def test_stats_nodes_and_metrics_show_each_nodes_items(cluster_factory):
    """Each node's item count and bytes, as its stats poll (every 5 s) saw
    them, in `stats nodes` and on /metrics: with replicas 2, the items sum to
    twice the keys written."""
    cl = cluster_factory(n=3, replicas=2, metrics=True)
    keys = [f"items:{i}" for i in range(300)]
    assert set(ph.set_many(cl.raw(), [(k, b"v" * 10) for k in keys])) == {b"STORED"}
    on_node = [int(cl.node_client(i).stats()["curr_items"]) for i in range(3)]
    assert sum(on_node) == 2 * len(keys), on_node

    def polled():
        st = cl.stats("nodes")
        return st if [int(st.get(f"node:{i}:curr_items", -1)) for i in range(3)] == on_node else None
    st = ph.wait_until(polled, 12, interval=0.25, what="stats nodes showing each node's curr_items")
    assert all(int(st[f"node:{i}:bytes"]) > 0 and int(st[f"node:{i}:limit_maxbytes"]) > 0 for i in range(3)), st
    _types, samples = parse_prometheus(cl.http("GET", "/metrics")[2])
    items = {lab["node"]: v for n, lab, v in samples if n == "memcluster_proxy_node_items"}
    assert items == {cl.node_addr(i): float(on_node[i]) for i in range(3)}, items


def test_memcstat_reads_proxy_stats(cluster):
    tool = require_tool("memcstat")
    host, port = cluster.addr
    p = subprocess.run([tool, f"--servers={host}:{port}"], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert re.search(rf"pid: {cluster.proxy.pid}\b", out), out
    assert "curr_connections:" in out and "get_hits:" in out, out


# --------------------------------------------------------------------------
# /metrics
# --------------------------------------------------------------------------

def parse_prometheus(text: str):
    """The exposition read by Prometheus' own Python parser (prometheus_client):
    returns ({family name: type}, [(sample name, labels, value)])."""
    types, samples = {}, []
    for family in text_string_to_metric_families(text):
        assert family.name not in types, f"two families named {family.name}"
        types[family.name] = family.type
        samples += [(s.name, s.labels, s.value) for s in family.samples]
    return types, samples


def histogram(samples, name: str, **labels) -> tuple[list[tuple[float, float]], float, float]:
    """One histogram's cumulative buckets [(le, count)], its _sum and _count."""
    def mine(lab):
        return all(lab.get(k) == v for k, v in labels.items())
    buckets = sorted((float(lab["le"]), v) for n, lab, v in samples if n == name + "_bucket" and mine(lab))
    [total] = [v for n, lab, v in samples if n == name + "_count" and mine(lab)]
    [summed] = [v for n, lab, v in samples if n == name + "_sum" and mine(lab)]
    return buckets, summed, total


def node_up(samples) -> dict[str, float]:
    return {lab["node"]: v for name, lab, v in samples if name == "memcluster_proxy_node_up"}


def test_metrics_prometheus_text_with_node_up(cluster_factory):
    cl = cluster_factory(n=3, replicas=2, metrics=True)
    c = cl.raw()
    ph.set_many(c, [(f"m{i}", b"x") for i in range(50)])
    ph.multi_get(c, [f"m{i}" for i in range(60)])
    status, headers, body = cl.http("GET", "/metrics")
    assert status == 200, (status, body)
    assert headers.get("content-type", "").startswith("text/plain"), headers
    types, samples = parse_prometheus(body)
    assert types.get("memcluster_proxy_node_up") == "gauge"
    assert node_up(samples) == {cl.node_addr(i): 1.0 for i in range(3)}, body
    vals = {n: v for n, lab, v in samples if not lab}
    st = cl.stats()
    assert vals["memcluster_proxy_get_hits_total"] == int(st["get_hits"]) == 50
    assert vals["memcluster_proxy_get_misses_total"] == int(st["get_misses"]) == 10

    cl.kill_node(1)
    for _ in range(3):   # traffic makes the proxy notice
        ph.multi_get(c, [f"m{i}" for i in range(50)])
    cl.wait_node_state(1, "down", timeout=5)
    _t, samples = parse_prometheus(cl.http("GET", "/metrics")[2])
    up = node_up(samples)
    assert up == {cl.node_addr(0): 1.0, cl.node_addr(1): 0.0, cl.node_addr(2): 1.0}, up

    status, _h, _b = cl.http("GET", "/nothing-here")
    assert status == 404
    status, _h, _b = cl.http("GET", "/reload")
    assert status != 200, "GET /reload must not reload"
    assert cl.stats()["proxy_reloads"] == "0"


def test_metrics_latency_histograms_by_command_and_node(cluster_factory):
    """Every request lands in its command's histogram once; a node's histogram
    counts the requests it answered; a node that takes 300 ms shows it."""
    cl = cluster_factory(n=2, replicas=1, metrics=True)
    _t, samples = parse_prometheus(cl.http("GET", "/metrics")[2])
    before = {command: histogram(samples, "memcluster_proxy_request_duration_seconds", command=command)[2]
              for command in ("set", "get", "multiget", "delete", "touch", "arithmetic", "other")}
    c = cl.raw()
    ph.set_many(c, [(f"h{i}", b"v") for i in range(40)])                 # 40 set
    ph.get_each(c, [f"h{i}" for i in range(30)])                          # 30 get
    ph.multi_get(c, [f"h{i}" for i in range(40)], batch=20)               # 2 multiget
    assert c.request(b"delete h0\r\n") == b"DELETED\r\n"                  # 1 delete
    assert c.request(b"touch h1 100\r\n") == b"TOUCHED\r\n"                # 1 touch
    assert c.request(b"incr nothing 1\r\n") == b"NOT_FOUND\r\n"            # 1 arithmetic
    assert c.request(b"version\r\n").startswith(b"VERSION ")                # 1 other
    types, samples = parse_prometheus(cl.http("GET", "/metrics")[2])
    assert types["memcluster_proxy_request_duration_seconds"] == "histogram"
    expected = {"set": 40, "get": 30, "multiget": 2, "delete": 1, "touch": 1, "arithmetic": 1, "other": 1}
    for command, count in expected.items():
        buckets, summed, total = histogram(samples, "memcluster_proxy_request_duration_seconds", command=command)
        assert total - before[command] == count, (command, total, before[command])
        assert buckets[-1] == (float("inf"), total), (command, buckets)
        assert [b[1] for b in buckets] == sorted(b[1] for b in buckets), "cumulative"
        assert buckets[0][0] == 2e-05 and buckets[-2][0] == 5.0, buckets
        assert 0 <= summed < total * 1.0, (command, summed)
    node_total = 0
    for i in range(2):
        _b, _s, total = histogram(samples, "memcluster_proxy_node_request_duration_seconds", node=cl.node_addr(i))
        node_total += total
    # 40 sets + 30 gets + 2 multi-gets over <= 2 nodes each + delete, touch, incr
    assert 40 + 30 + 2 + 3 <= node_total <= 40 + 30 + 4 + 3, node_total

    # A slow node: 300 ms between the request and its reply.
    key = next(k for k in (f"slow{i}" for i in range(1000)) if _owner(cl, k) == 1)
    cl.sigstop(1)
    try:
        c.send(b"get %s\r\n" % key.encode())
        time.sleep(0.3)
    finally:
        cl.sigcont(1)
    assert c.read_until(b"END\r\n", timeout=5).endswith(b"END\r\n")
    _t, samples = parse_prometheus(cl.http("GET", "/metrics")[2])
    buckets, _s, _t = histogram(samples, "memcluster_proxy_node_request_duration_seconds", node=cl.node_addr(1))
    at = dict(buckets)
    assert at[0.2] < at[float("inf")], f"no reply slower than 200 ms at the stopped node: {buckets}"
    buckets, _s, _t = histogram(samples, "memcluster_proxy_request_duration_seconds", command="get")
    assert dict(buckets)[0.2] < dict(buckets)[float("inf")], buckets


def _owner(cl: ph.Cluster, key: str) -> int:
    """The node index the proxy sends `key` to (replicas 1): set it and look."""
    c = cl.raw()
    assert c.request(b"set %s 0 0 1\r\nx\r\n" % key.encode()) == b"STORED\r\n"
    [(owner, _v)] = cl.placement([key])[key]
    return owner


def test_health_and_ready_probes(cluster_factory):
    """/health answers while the proxy runs; /ready only while a node is up,
    and never during shutdown (load balancers stop sending clients)."""
    cl = cluster_factory(n=2, replicas=2, metrics=True)
    assert cl.http("GET", "/health")[0::2] == (200, "ok\n")
    assert cl.http("GET", "/ready")[0::2] == (200, "ready\n")
    for i in range(2):
        cl.kill_node(i)
    c = cl.raw()
    for i in range(2):
        deadline = time.monotonic() + 10
        while cl.node_states()[i] != "down" and time.monotonic() < deadline:
            c.request(b"get k%d\r\n" % i, timeout=5)
            time.sleep(0.05)
    status, _h, body = cl.http("GET", "/ready")
    assert (status, body) == (503, "no node is up (2 down)\n"), (status, body)
    assert cl.http("GET", "/health")[0] == 200
    cl.restart_node(0)
    cl.wait_node_state(0, "up", timeout=10)
    assert cl.http("GET", "/ready")[0] == 200
    assert cl.http("POST", "/ready")[0] == 405
    assert cl.http("POST", "/health")[0] == 405

    # Shutting down with a request still waiting for a stopped node: not ready.
    cl.sigstop(0)
    try:
        c = cl.raw()
        c.send(b"get pending\r\n")
        time.sleep(0.1)
        cl.proxy.proc.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        status, _h, body = cl.http("GET", "/ready")
        assert (status, body) == (503, "shutting down\n"), (status, body)
        assert cl.http("GET", "/health")[0] == 200
    finally:
        cl.sigcont(0)
