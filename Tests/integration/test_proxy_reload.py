"""Reloading the proxy's configuration: scale-out from 2 to 3 nodes with
SIGHUP and with POST /reload, without dropping a client connection or a
request in flight; afterwards every key still reads through the proxy
(warmed up from its previous owner), keys whose owner changed are on the
new node, and only those (about a third) moved. A bad file on reload is
refused and the running configuration keeps serving.

Who owns a key is predicted with ketama.py, which test_proxy_placement.py
checks against libmemcached (pylibmc) and twemproxy.
"""

from __future__ import annotations

import re

import pytest

import harness
import ketama
import proxy_harness as ph

N_KEYS = 2000


def ring_of(cl: ph.Cluster, indices) -> ketama.Ring:
    return ketama.Ring([(cl.nodes[i].host, cl.nodes[i].port, 1, None) for i in indices])


def wait_reloads(cl: ph.Cluster, n: int, field: str = "proxy_reloads", timeout: float = 5.0) -> dict:
    def check():
        st = cl.stats()
        return st if st.get(field) == str(n) else None
    return ph.wait_until(check, timeout, what=f"{field} = {n}")


def write_keys(conn, n: int = N_KEYS, prefix: str = "rl"):
    keys = [f"{prefix}:{i}" for i in range(n)]
    values = {k: b"value-%d" % i for i, k in enumerate(keys)}
    assert set(ph.set_many(conn, values.items())) == {b"STORED"}
    return keys, values


def read_problems(conn, keys, values) -> list[str]:
    out = []
    for k, (vals, end) in zip(keys, ph.get_each(conn, keys)):
        if end != b"END":
            out.append(f"{k}: {end!r}")
        elif not vals:
            out.append(f"{k}: miss")
        elif vals[0][2] != values[k]:
            out.append(f"{k}: {vals[0][2]!r}")
    return out


def test_sighup_scale_out_keeps_connections_and_warms_up(cluster_factory):
    cl = cluster_factory(n=2, replicas=1, metrics=True)
    new = cl.add_node()
    conn = cl.raw(timeout=20)
    keys, values = write_keys(conn)
    ring2, ring3 = ring_of(cl, [0, 1]), ring_of(cl, [0, 1, 2])
    before = cl.placement(keys)
    assert all([i for i, _ in before[k]] == [ring2.owner(k)] for k in keys)

    cl.write_config([0, 1, 2])
    # a pipeline of 2,000 gets in flight while the proxy reloads
    conn.send(b"".join(b"get %s\r\n" % k.encode() for k in keys))
    cl.sighup()
    replies = ph.read_retrievals(conn, len(keys), timeout=30)
    inflight = [f"{k}: {end!r} {vals[:1]!r}" for k, (vals, end) in zip(keys, replies)
                if end != b"END" or not vals or vals[0][2] != values[k]]
    st = wait_reloads(cl, 1)
    assert st["proxy_nodes"] == "3" and st["proxy_reload_failures"] == "0", st
    assert not inflight, f"{len(inflight)} in-flight gets failed across the reload: {inflight[:10]}"
    assert not conn.eof, "the client connection was closed by the reload"
    assert conn.request(b"version\r\n").startswith(b"VERSION ")

    # every key still readable on the same connection
    p = read_problems(conn, keys, values)
    assert not p, f"{len(p)} keys not readable after the scale-out: {p[:10]}"

    moved = [k for k in keys if ring3.owner(k) != ring2.owner(k)]
    assert all(ring3.owner(k) == new for k in moved), "ketama moved keys between old nodes"
    assert 0.2 * N_KEYS < len(moved) < 0.45 * N_KEYS, f"{len(moved)} of {N_KEYS} keys change owner"
    on_new = cl.node_contents(new, keys)
    want = {k: values[k] for k in moved}
    missing = [k for k in moved if k not in on_new]
    extra = [k for k in on_new if k not in want]
    assert not missing and not extra and on_new == want, \
        f"new node: {len(missing)} moved keys missing, {len(extra)} keys that did not move"
    st = cl.stats()
    assert int(st["proxy_warmup_hits"]) >= len(moved), st
    # while the change is under way a write of a moved key reaches its old
    # owner too, so a proxy still on the old membership reads it (docs/membership.md)
    k = moved[0]
    assert conn.request(b"set %s 0 0 3\r\nnew\r\n" % k.encode()) == b"STORED\r\n"
    assert sorted((i, v) for i, v in cl.placement([k])[k] if v == b"new") == \
        sorted([(ring2.owner(k), b"new"), (new, b"new")])


def test_scale_out_then_multiget_reads_every_key(cluster_factory):
    """The same scale-out, but the keys are read back by multi-gets (what
    pylibmc/pymemcache get_multi and Django get_many send)."""
    cl = cluster_factory(n=2, replicas=1)
    cl.add_node()
    conn = cl.raw(timeout=20)
    keys, values = write_keys(conn, prefix="rlm")
    cl.write_config([0, 1, 2])
    cl.sighup()
    wait_reloads(cl, 1)
    ring2, ring3 = ring_of(cl, [0, 1]), ring_of(cl, [0, 1, 2])
    moved = {k for k in keys if ring3.owner(k) != ring2.owner(k)}
    got = ph.multi_get(conn, keys, batch=100)
    missing = [k for k in keys if k not in got]
    wrong = [k for k in keys if k in got and got[k] != values[k]]
    assert not missing and not wrong, (
        f"multi-gets after adding a node: {len(missing)} of {N_KEYS} keys missing "
        f"({len([k for k in missing if k in moved])} of them moved to the new node, "
        f"{len(moved)} moved in all), {len(wrong)} wrong; e.g. {missing[:5]}")


def test_http_reload_scale_out_with_replicas(cluster_factory):
    cl = cluster_factory(n=2, replicas=2, metrics=True)
    new = cl.add_node()
    conn = cl.raw(timeout=20)
    keys, values = write_keys(conn, n=1200, prefix="hr")
    cl.write_config([0, 1, 2])
    status, _h, body = cl.http("POST", "/reload")
    assert (status, body.strip()) == (200, "OK"), (status, body)
    cl.wait_node_state(new, "up")      # a joining node is flushed before it serves
    st = cl.stats()
    assert st["proxy_reloads"] == "1" and st["proxy_nodes"] == "3", st
    assert not conn.eof
    p = read_problems(conn, keys, values)
    assert not p, f"{len(p)} keys not readable after POST /reload: {p[:10]}"
    ring3 = ring_of(cl, [0, 1, 2])
    primary_new = {k for k in keys if ring3.replica_set(k, 2)[0] == new}
    on_new = cl.node_contents(new, keys)
    assert set(on_new) == primary_new, (len(on_new), len(primary_new))
    assert all(on_new[k] == values[k] for k in on_new)
    # while the change is under way, writes go to the old and the new replica
    # sets: with 2 nodes and replicas 2 the old set is both old nodes
    assert set(ph.set_many(conn, [(k, b"w") for k in keys[:300]])) == {b"STORED"}
    pl = cl.placement(keys[:300])
    bad = [k for k in keys[:300]
           if sorted(i for i, v in pl[k] if v == b"w") != sorted({0, 1} | set(ring3.replica_set(k, 2)))]
    assert not bad, f"{len(bad)} keys not written to their old and new replica sets: {bad[:5]}"


BAD_CONFIGS = {
    "yaml_syntax_error": "listen: 127.0.0.1:1\nnodes: [\"127.0.0.1:1\"\n  - oops: [\n",
    "unknown_option": None,     # filled in with the real nodes below
    "no_nodes": "threads: 2\nnodes: []\n",
}


@pytest.mark.parametrize("kind", list(BAD_CONFIGS))
def test_bad_reload_refused_old_config_keeps_serving(cluster_factory, kind):
    cl = cluster_factory(n=2, replicas=2, metrics=True)
    cl.add_node()
    conn = cl.raw(timeout=20)
    keys, values = write_keys(conn, n=500, prefix="bad")
    good_text = open(cl.config_path).read()
    raw = BAD_CONFIGS[kind]
    if raw is None:
        raw = cl.write_config([0, 1, 2]).replace("nodes:", "replicas_typo: 3\nnodes:")
    cl.write_config(raw=raw)

    cl.sighup()
    st = wait_reloads(cl, 1, field="proxy_reload_failures")
    assert st["proxy_reloads"] == "0" and st["proxy_nodes"] == "2", st
    assert cl.proxy.alive(), cl.describe()
    status, _h, body = cl.http("POST", "/reload")
    assert status == 400 and body.strip() and body.strip() != "OK", (status, body)
    assert "proxy.yaml" in body, f"the refusal does not name the file: {body!r}"
    if kind != "no_nodes":
        assert re.search(r"proxy\.yaml: ?\d+", body), f"the refusal does not name the line: {body!r}"
    st = cl.stats()
    assert st["proxy_reload_failures"] == "2" and st["proxy_nodes"] == "2", st
    # the old configuration keeps working, on the same connection
    assert not conn.eof
    p = read_problems(conn, keys, values)
    assert not p, f"after a refused reload: {p[:10]}"
    assert conn.request(b"set after-bad 0 0 2\r\nok\r\n") == b"STORED\r\n"
    assert len(cl.placement(["after-bad"])["after-bad"]) == 2
    # and a good file afterwards is taken
    cl.write_config([0, 1, 2])
    status, _h, body = cl.http("POST", "/reload")
    assert (status, body.strip()) == (200, "OK"), (status, body, good_text)
    assert cl.stats()["proxy_nodes"] == "3"


def test_warmup_copies_flags_and_remaining_ttl(cluster_factory):
    cl = cluster_factory(n=2, replicas=1)
    new = cl.add_node()
    conn = cl.raw(timeout=20)
    keys = [f"ttl:{i}" for i in range(600)]
    with_ttl = set(keys[::2])
    payload = b"".join(b"set %s %d %d 2\r\nv%d\r\n" % (k.encode(), 1000 + i, 300 if k in with_ttl else 0, i % 10)
                       for i, k in enumerate(keys))
    conn.send(payload)
    assert set(ph.read_lines(conn, len(keys))) == {b"STORED"}
    cl.write_config([0, 1, 2])
    cl.sighup()
    wait_reloads(cl, 1)
    cl.wait_node_state(new, "up")      # a joining node is flushed before it serves
    replies = ph.get_each(conn, keys)
    assert all(end == b"END" and len(v) == 1 for v, end in replies)
    ring2, ring3 = ring_of(cl, [0, 1]), ring_of(cl, [0, 1, 2])
    moved = [k for k in keys if ring3.owner(k) != ring2.owner(k)]
    assert len(moved) > 100
    nc = cl.node_client(new)
    bad = []
    for k in moved:
        i = keys.index(k)
        r = nc.conn.request(b"mg %s f t v\r\n" % k.encode(), done=lambda b: b.endswith(b"\r\n") and (b.startswith(b"EN") or b.count(b"\r\n") >= 2))
        m = re.match(rb"VA 2 f(\d+) t(-?\d+)\r\nv(\d)\r\n$", r)
        if not m:
            bad.append(f"{k}: {r!r}")
            continue
        flags, ttl = int(m.group(1)), int(m.group(2))
        ok = flags == 1000 + i and (290 <= ttl <= 300 if k in with_ttl else ttl == -1)
        if not ok:
            bad.append(f"{k}: flags {flags} (want {1000 + i}), ttl {ttl} (want {'~300' if k in with_ttl else -1})")
    assert not bad, f"{len(bad)} of {len(moved)} warmed-up keys differ on the new node: {bad[:8]}"


def test_commands_on_moved_keys_answer_like_memcached(cluster_factory, server_factory, reference_bin):
    """After a scale-out, a key that moved is still the same key: deleting it,
    incrementing it, appending to it, `add` (must say NOT_STORED), ... before
    anyone read it answer as memcached does, and a deleted key stays deleted."""
    cl = cluster_factory(n=2, replicas=1)
    cl.add_node()
    ref = server_factory(binary=reference_bin)
    conn, rconn = cl.raw(), harness.RawConn(ref.addr)
    try:
        keys = [f"mv:{i}" for i in range(600)]
        for c in (conn, rconn):
            assert set(ph.set_many(c, [(k, b"10") for k in keys])) == {b"STORED"}
        cl.write_config([0, 1, 2])
        cl.sighup()
        wait_reloads(cl, 1)
        r2, r3 = ring_of(cl, [0, 1]), ring_of(cl, [0, 1, 2])
        moved = [k for k in keys if r3.owner(k) != r2.owner(k)]
        assert len(moved) >= len(ph.KEY_COMMANDS)
        diffs = ph.compare_key_commands(conn, rconn, moved)
        assert not diffs, (f"{len(diffs)} of {len(ph.KEY_COMMANDS)} commands on keys that moved to the new node "
                           "answer differently from memcached:\n" + "\n".join(diffs))
    finally:
        rconn.close()
