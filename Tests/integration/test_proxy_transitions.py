"""Membership changes that never serve an overwritten or deleted value
(docs/membership.md, "A change, step by step").

A proxy that learns a change keeps reading the old owners for a settle
period (`membership_settle_ms`) while it writes them and deletes the key at
the new owners; then it reads the new owners, warms them from every old
owner, and writes both; once the change is over it writes the new owners
and deletes the key at owners that no longer own it. These tests drive that
through real proxies and nodes:

- 3 -> 4 -> 3 nodes with overwrites and deletes in between (replicas 1 and
  2, overwrites while the change is under way and after it ended): no read
  returns an overwritten value or a deleted key;
- two proxies, one learning a change 1.5 s after the other (inside the
  settle period), under a mixed load of sets, deletes and gets spread over
  both: no stale read, no lost delete, and both end on one generation;
- removing a node with replicas 1: reads during the warm-up find every key
  (copied from the node being removed).

Every value a test writes is unique, so any read is either the latest value
the test wrote for that key, a miss (a cache may miss), or a defect.
"""

from __future__ import annotations

import random
import time

import pytest

import harness
import proxy_harness as ph

N_KEYS = 3000
SETTLE_MS = 300
WARMUP_S = 1

# settle, warm-up, settle again: when a change is over
CHANGE_S = (2 * SETTLE_MS) / 1000 + WARMUP_S


class Model:
    """What the test last wrote to each key: its value, or None once deleted."""

    def __init__(self):
        self.latest: dict[str, bytes | None] = {}
        self.version = 0
        self.stale: list[str] = []
        self.resurrected: list[str] = []
        self.hits = 0
        self.reads = 0

    def next_value(self, key: str) -> bytes:
        self.version += 1
        return b"%s=%d" % (key.encode(), self.version)

    def check_read(self, key: str, got: bytes | None) -> None:
        self.reads += 1
        if got is None:
            return
        self.hits += 1
        want = self.latest.get(key)
        if want is None:
            self.resurrected.append(f"{key}: {got!r} after its delete")
        elif got != want:
            self.stale.append(f"{key}: {got!r}, latest {want!r}")

    def problems(self) -> str:
        return (f"{len(self.stale)} stale reads {self.stale[:5]}, "
                f"{len(self.resurrected)} deleted keys read {self.resurrected[:5]}")


def set_all(conn, model: Model, keys) -> None:
    items = []
    for k in keys:
        v = model.next_value(k)
        items.append((k, v))
    assert set(ph.set_many(conn, items)) == {b"STORED"}
    for k, v in items:
        model.latest[k] = v


def delete_all(conn, model: Model, keys) -> None:
    conn.send(b"".join(b"delete %s\r\n" % k.encode() for k in keys))
    for line in ph.read_lines(conn, len(keys)):
        assert line in (b"DELETED", b"NOT_FOUND"), line
    for k in keys:
        model.latest[k] = None


def read_all(conn, model: Model, keys) -> None:
    for k, (vals, end) in zip(keys, ph.get_each(conn, keys)):
        assert end == b"END", (k, end)
        model.check_read(k, vals[0][2] if vals else None)


def mixed_batch(conn, model: Model, keys, rng: random.Random) -> int:
    """60 distinct keys at random: 24 overwritten, 9 deleted, 27 read (checked
    against the model), pipelined on `conn`. Returns the operations sent."""
    batch = rng.sample(keys, 60)
    sets, deletes, gets = batch[:24], batch[24:33], batch[33:]
    set_all(conn, model, sets)
    delete_all(conn, model, deletes)
    read_all(conn, model, gets)
    return len(batch)


def phase(cl: ph.Cluster) -> str:
    return cl.stats()["proxy_membership_phase"]


def reload_to(cl: ph.Cluster, nodes) -> None:
    before = cl.stats()["proxy_reloads"]
    cl.write_config(nodes)
    cl.sighup()
    ph.wait_until(lambda: cl.stats()["proxy_reloads"] != before, 5, what="the reload")


def wait_change_over(cl: ph.Cluster) -> None:
    ph.wait_until(lambda: phase(cl) == "stable", CHANGE_S + 10, what="the membership change to end")


@pytest.mark.parametrize("replicas", [1, 2])
@pytest.mark.parametrize("overwrite", ["during", "after"])
def test_scale_out_and_back_serves_no_overwritten_or_deleted_value(cluster_factory, replicas, overwrite):
    cl = cluster_factory(n=3, replicas=replicas,
                         options={"membership_settle_ms": SETTLE_MS, "warmup_s": WARMUP_S,
                                  "watch_config": False})
    conn = cl.raw(timeout=20)
    model = Model()
    keys = [f"so:{i}" for i in range(N_KEYS)]
    set_all(conn, model, keys)

    new = cl.add_node()
    reload_to(cl, [0, 1, 2, new])
    if overwrite == "after":
        wait_change_over(cl)
    set_all(conn, model, keys)                  # every key overwritten
    delete_all(conn, model, keys[::7])          # and some deleted
    read_all(conn, model, keys)

    reload_to(cl, [0, 1, 2])                    # waits until the first change is over
    deadline = time.monotonic() + CHANGE_S * 2 + 10
    rounds = 0
    while time.monotonic() < deadline and rounds < 2000:
        read_all(conn, model, keys)             # through the second change, and after
        rounds += 1
        if phase(cl) == "stable":
            break
        time.sleep(0.02)
    assert cl.stats()["proxy_nodes"] == "3" and phase(cl) == "stable", "the removal never ended"
    read_all(conn, model, keys)
    assert not model.stale and not model.resurrected, model.problems()
    hit_rate = model.hits / model.reads
    print(f"replicas {replicas}, overwrite {overwrite}: {model.reads} reads, "
          f"hit rate {hit_rate:.4f}, {rounds} rounds")
    live = len(keys) - len(keys[::7])
    assert model.hits > 0.5 * live, f"hit rate {hit_rate:.3f}: reads found almost nothing"


def spawn_second_proxy(cl: ph.Cluster, config_path: str) -> tuple[harness.Server, tuple]:
    port = harness.free_port()
    srv = ph.spawn([ph.proxy_binary(), "--config", config_path, "--listen", f"{harness.HOST}:{port}"],
                   harness.HOST, port, prefix="mcproxy2-")
    return srv, (harness.HOST, port)


@pytest.mark.parametrize("change", ["add", "remove"])
def test_two_proxies_learning_a_change_apart_serve_no_stale_value(cluster_factory, tmp_path, change):
    """Proxy A follows the file at once; proxy B reads its own copy, written
    1.5 s later (a slow config push). Settle period 2.5 s."""
    settle_ms, lag_s, warmup_s = 2500, 1.5, 1
    n0 = 3 if change == "add" else 4
    cl = cluster_factory(n=n0, replicas=2,
                         options={"membership_settle_ms": settle_ms, "warmup_s": warmup_s})
    b_config = tmp_path / "b.yaml"
    b_config.write_text(open(cl.config_path).read())
    b, b_addr = spawn_second_proxy(cl, str(b_config))
    try:
        conns = [cl.raw(timeout=20), cl.raw(timeout=20, addr=b_addr)]
        model = Model()
        keys = [f"tp:{i}" for i in range(1500)]
        set_all(conns[0], model, keys)
        rng = random.Random(9)

        if change == "add":
            new_nodes = list(range(n0)) + [cl.add_node()]
        else:
            new_nodes = list(range(n0 - 1))
        text = cl.write_config(new_nodes)
        t_change = time.monotonic()
        b_written = False
        end = t_change + lag_s + (2 * settle_ms) / 1000 + warmup_s + 1.5
        ops = 0
        turn = 0
        while time.monotonic() < end and ops < 400_000:
            if not b_written and time.monotonic() - t_change >= lag_s:
                (tmp_path / "b.tmp").write_text(text)
                (tmp_path / "b.tmp").replace(b_config)
                b_written = True
            ops += mixed_batch(conns[turn % 2], model, keys, rng)
            turn += 1
        assert b_written
        with harness.TextClient(b_addr) as t:
            gen_b = t.stats()["proxy_membership_generation"]
        ph.wait_until(lambda: cl.stats()["proxy_membership_generation"] == gen_b, 5,
                      what="both proxies on one generation")
        for conn in conns:
            read_all(conn, model, keys)
        print(f"{change}: {ops} operations, {model.reads} reads, hit rate {model.hits / model.reads:.4f}")
        assert not model.stale and not model.resurrected, model.problems()
    finally:
        b.stop()


def test_removing_a_node_with_one_replica_keeps_its_keys_readable(cluster_factory):
    """Keys of the node being removed are read during the warm-up: each miss
    at a key's new owner is copied from the node leaving."""
    cl = cluster_factory(n=3, replicas=1,
                         options={"membership_settle_ms": 0, "warmup_s": 30, "watch_config": False})
    conn = cl.raw(timeout=20)
    model = Model()
    keys = [f"rm:{i}" for i in range(N_KEYS)]
    set_all(conn, model, keys)
    reload_to(cl, [0, 1])
    read_all(conn, model, keys)
    first_pass = model.hits / model.reads
    read_all(conn, model, keys)
    assert not model.stale and not model.resurrected, model.problems()
    assert first_pass >= 0.999, f"hit rate {first_pass:.4f} right after removing a node"
    assert model.hits == model.reads, "a key read once during the warm-up was lost afterwards"
    st = cl.stats()
    assert int(st["proxy_warmup_hits"]) > N_KEYS // 5, st
