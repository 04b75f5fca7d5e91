"""Replicas stay identical when two clients write the same key at once.

The proxy keeps each key on R replicas and falls back to the next replica
when the primary fails; if two replicas of a key end up holding different
values after every write was acknowledged, a read returns one value while
the primary is up and the other (an overwritten one) once it fails -- a
stale read through the proxy with no partition at all.

The tests use two client connections (the proxy hands consecutive
connections to different worker threads, each with its own connections to
the nodes) and read the replicas directly, or through the proxy, after both
clients' requests were answered. The last one is about the copy the proxy
makes itself after a scale-out (warm-up from the previous owner): it must
not overwrite a value a client stored meanwhile.
"""

from __future__ import annotations

import collections
import time


import pytest

import harness
import ketama
import proxy_harness as ph

# The two clients' connections land on different workers, each with its own
# connections to the nodes: what keeps the replicas identical is the proxy's
# per-key write order across workers (KeyFence).

ROUNDS = 200


def replicas_of(cl: ph.Cluster, ring: ketama.Ring, key: str) -> tuple[bytes | None, bytes | None]:
    primary, secondary = ring.replica_set(key, 2)
    held = dict(cl.placement([key])[key])
    return held.get(primary), held.get(secondary)


def test_cas_copy_does_not_overtake_a_later_write(cluster):
    """A `cas` goes to the primary only and its result is copied to the other
    replica afterwards; a plain `set` sent by another client meanwhile reaches
    both replicas. If the set lands at the primary after the cas (so the
    primary ends with the set's value) the other replica must end with it
    too, not with the cas value copied over it later."""
    cl = cluster
    ring = ketama.Ring([(n.host, n.port, 1, None) for n in cl.nodes])
    a, b = cl.raw(), cl.raw()
    outcomes = collections.Counter()
    diverged = []
    deadline = time.monotonic() + 20
    for i in range(ROUNDS):
        if time.monotonic() > deadline:
            break
        k = f"casrace:{i}"
        assert a.request(b"set %s 0 0 4\r\ninit\r\n" % k.encode()) == b"STORED\r\n"
        [(vals, _end)] = ph.get_each(a, [k], cmd="gets")
        unique = vals[0][3]
        a.send(b"cas %s 0 0 2 %d\r\nAA\r\n" % (k.encode(), unique))
        b.send(b"set %s 0 0 2\r\nBB\r\n" % k.encode())
        ra, rb = ph.read_lines(a, 1)[0], ph.read_lines(b, 1)[0]
        time.sleep(0.005)      # let a copy still on its way arrive
        p, s = replicas_of(cl, ring, k)
        outcomes[(ra.decode(), rb.decode(), f"primary={p!r}", f"replica={s!r}")] += 1
        if p != s:
            diverged.append(k)
    assert not diverged, (
        f"{len(diverged)} of {sum(outcomes.values())} keys left with different values on their two replicas "
        f"after `cas k ... AA` (client A) and `set k ... BB` (client B) were both answered; outcomes: "
        f"{dict(outcomes)}; e.g. {diverged[:5]}")


def test_concurrent_sets_leave_replicas_identical(cluster):
    """Two clients set the same key at the same moment: either value may win,
    but both replicas must end with the same one."""
    cl = cluster
    ring = ketama.Ring([(n.host, n.port, 1, None) for n in cl.nodes])
    a, b = cl.raw(), cl.raw()
    outcomes = collections.Counter()
    diverged = []
    deadline = time.monotonic() + 20
    for i in range(ROUNDS):
        if time.monotonic() > deadline:
            break
        k = f"setrace:{i}"
        a.send(b"set %s 0 0 2\r\nAA\r\n" % k.encode())
        b.send(b"set %s 0 0 2\r\nBB\r\n" % k.encode())
        assert ph.read_lines(a, 1) == [b"STORED"] and ph.read_lines(b, 1) == [b"STORED"]
        p, s = replicas_of(cl, ring, k)
        outcomes[(f"primary={p!r}", f"replica={s!r}")] += 1
        if p != s:
            diverged.append(k)
    assert not diverged, (
        f"{len(diverged)} of {sum(outcomes.values())} keys left with different values on their two replicas "
        f"after two clients' concurrent sets were both answered STORED; outcomes {dict(outcomes)}; "
        f"e.g. {diverged[:5]}")


def test_divergence_shows_as_a_stale_read_after_failover(cluster):
    """What the two tests above cost a client: a key reads X through the
    proxy, its primary dies, and it then reads an older, overwritten value."""
    cl = cluster
    ring = ketama.Ring([(n.host, n.port, 1, None) for n in cl.nodes])
    a, b = cl.raw(), cl.raw()
    victim = 0
    flipped = []
    tried = 0
    # keys whose primary is node 0, written concurrently by two clients
    keys = [k for k in (f"flip:{i}" for i in range(2000)) if ring.owner(k) == victim][:150]
    before = {}
    for k in keys:
        tried += 1
        a.send(b"set %s 0 0 2\r\nAA\r\n" % k.encode())
        b.send(b"set %s 0 0 2\r\nBB\r\n" % k.encode())
        assert ph.read_lines(a, 1) == [b"STORED"] and ph.read_lines(b, 1) == [b"STORED"]
    time.sleep(0.05)
    for k, (vals, end) in zip(keys, ph.get_each(a, keys)):
        assert end == b"END" and vals
        before[k] = vals[0][2]
    cl.kill_node(victim)
    for k, (vals, end) in zip(keys, ph.get_each(a, keys)):
        assert end == b"END" and vals, f"{k}: {end!r}"
        if vals[0][2] != before[k]:
            flipped.append(f"{k}: {before[k]!r} -> {vals[0][2]!r}")
    assert not flipped, (f"{len(flipped)} of {tried} keys read a different value through the proxy after their "
                         f"primary was killed (no write in between): {flipped[:6]}")


def race_read_with_write(cl: ph.Cluster, keys: list[str]) -> tuple[list[str], collections.Counter]:
    """For each key (which holds b"OLD"): client A gets it (a miss at its node
    that the proxy fills from elsewhere) while client B sets it to b"NEW";
    once B got STORED, a read through the proxy must return NEW."""
    a, b = cl.raw(), cl.raw()
    lost, outcomes = [], collections.Counter()
    deadline = time.monotonic() + 20
    for k in keys:
        if time.monotonic() > deadline:
            break
        a.send(b"get %s\r\n" % k.encode())
        b.send(b"set %s 0 0 3\r\nNEW\r\n" % k.encode())
        [(va, _ea)] = ph.read_retrievals(a, 1)
        assert ph.read_lines(b, 1) == [b"STORED"]
        [(vc, ec)] = ph.get_each(a, [k])
        after = vc[0][2] if vc else None
        outcomes[(f"A read {va[0][2] if va else None!r}", f"then {after!r}")] += 1
        if after != b"NEW":
            lost.append(k)
    return lost, outcomes


def test_warmup_copy_does_not_overwrite_a_newer_write(cluster_factory):
    """After a scale-out a miss at a key's new owner is filled from its
    previous owner. A client's `set` answered meanwhile must not be replaced
    by that older copy."""
    cl = cluster_factory(n=2, replicas=1)
    cl.add_node()
    c = cl.raw()
    keys = [f"wrace:{i}" for i in range(1500)]
    assert set(ph.set_many(c, [(k, b"OLD") for k in keys])) == {b"STORED"}
    cl.write_config([0, 1, 2])
    cl.sighup()
    ph.wait_until(lambda: cl.stats()["proxy_reloads"] == "1", 5, what="reload")
    r2 = ketama.Ring([(n.host, n.port, 1, None) for n in cl.nodes[:2]])
    r3 = ketama.Ring([(n.host, n.port, 1, None) for n in cl.nodes])
    moved = [k for k in keys if r2.owner(k) != r3.owner(k)][:200]
    assert len(moved) == 200
    lost, outcomes = race_read_with_write(cl, moved)
    assert not lost, (f"{len(lost)} of {sum(outcomes.values())} moved keys read OLD after another client's "
                      f"`set k 0 0 3 NEW` was answered STORED (the warm-up copy landed after it); "
                      f"outcomes {dict(outcomes)}; e.g. {lost[:5]}")



def spawn_second_proxy(cl: ph.Cluster, tmp_path) -> tuple[object, tuple]:
    """A second proxy on the same nodes (its own copy of the configuration),
    as on a second application host."""
    config = tmp_path / "second.yaml"
    config.write_text(open(cl.config_path).read())
    port = harness.free_port()
    server = ph.spawn([ph.proxy_binary(), "--config", str(config), "--listen", f"{harness.HOST}:{port}"],
                      harness.HOST, port, prefix="mcproxy2-")
    return server, (harness.HOST, port)


def differing(cl: ph.Cluster, ring: ketama.Ring, keys: list[str]) -> list[str]:
    """Keys whose two replicas do not hold the same value (or both none)."""
    placed = cl.placement(keys)
    return [k for k in keys if len(placed.get(k, [])) not in (0, 2) or len({v for _n, v in placed.get(k, [])}) > 1]


@pytest.mark.parametrize("through", ["one proxy", "two proxies"])
def test_concurrent_writers_converge(cluster, tmp_path, through):
    """Two clients write each key at the same instant (sets, appends,
    deletes), through two workers of one proxy or through two proxies: once
    the writes stop, replicas that differ are found and repaired (the
    proxies read each write back, ReplicaCheck); within 10 s no key's
    replicas differ."""
    cl = cluster
    ring = ketama.Ring([(n.host, n.port, 1, None) for n in cl.nodes])
    second = None
    try:
        if through == "two proxies":
            second, second_addr = spawn_second_proxy(cl, tmp_path)
            a, b = cl.raw(), cl.raw(addr=second_addr)
        else:
            a, b = cl.raw(), cl.raw()
        keys = [f"conv:{i}" for i in range(400)]
        deadline = time.monotonic() + 20
        for round_ in range(3):
            for i, k in enumerate(keys):
                if time.monotonic() > deadline:
                    break
                kb = k.encode()
                if round_ == 1 and i % 4 == 0:
                    a.send(b"append %s 0 0 1\r\nX\r\n" % kb)
                    b.send(b"set %s 0 0 2\r\nB%d\r\n" % (kb, round_))
                elif round_ == 2 and i % 5 == 0:
                    a.send(b"delete %s\r\n" % kb)
                    b.send(b"set %s 0 0 2\r\nB%d\r\n" % (kb, round_))
                else:
                    a.send(b"set %s 0 0 2\r\nA%d\r\n" % (kb, round_))
                    b.send(b"set %s 0 0 2\r\nB%d\r\n" % (kb, round_))
                ph.read_lines(a, 1)
                assert ph.read_lines(b, 1) == [b"STORED"]
        right_after = differing(cl, ring, keys)
        stop = time.monotonic()
        left = right_after
        while left and time.monotonic() - stop < 10:
            time.sleep(0.25)
            left = differing(cl, ring, keys)
        proxies = [cl.addr] + ([second_addr] if second is not None else [])
        counted = []
        for addr in proxies:
            with harness.TextClient(addr) as c:
                st = c.stats()
            counted.append((int(st["proxy_replica_checks"]), int(st["proxy_replica_repairs"])))
        print(f"{through}: {len(right_after)} of {len(keys)} keys differed when the writes stopped, "
              f"{len(left)} after {time.monotonic() - stop:.1f} s; (checks, repairs) per proxy: {counted}")
        assert not left, (f"{len(left)} of {len(keys)} keys still hold different values on their replicas "
                          f"10 s after the writes stopped: "
                          f"{ {k: cl.placement([k])[k] for k in left[:4]} }")
        assert all(checks > 0 for checks, _ in counted), counted
    finally:
        if second is not None:
            second.stop()
