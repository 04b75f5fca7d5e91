"""The rebalance (docs/membership.md, "Rebalance"): after a membership
change, keys move to their new owners without waiting for reads, and copies
left where no member owns them are deleted, listing each node's keys with
`lru_crawler metadump all`.

- add a node with replicas 2, let the rebalance run, then freeze an original
  node: every key still reads (hit 1.000), and every key is on exactly its
  two owners;
- remove (drain) a node with replicas 1 without reading anything: once the
  change is over and the node is stopped, hit >= 0.999;
- 3 -> 4 -> 3 with overwrites and deletes in between, replicas 1 and 2: no
  stale read, no deleted key read, and afterwards every key on exactly its
  replica set;
- a node restarted empty is refilled by a repair pass with nothing read;
- a node added while a restarted node is still empty loses no key;
- `memcluster-admin rebalance` (POST /rebalance) restores copies lost behind
  the proxy's back and deletes an orphan; refused without the token, while
  a pass is under way and with the rebalance off.

Nodes are the target under test (memcluster-node or memcached: both serve
metadump).
"""

from __future__ import annotations

import time

import pytest

import ketama
import proxy_harness as ph
from test_proxy_transitions import Model, delete_all, read_all, reload_to, set_all

N_KEYS = 3000
OPTIONS = {"membership_settle_ms": 0, "warmup_s": 2, "rebalance": True, "watch_config": False}


def ring_of(cl: ph.Cluster, indices) -> ketama.Ring:
    return ketama.Ring([(cl.nodes[i].host, cl.nodes[i].port, 1, None) for i in indices])


def wait_stable_and_rebalanced(cl: ph.Cluster, passes: int, timeout: float = 30) -> dict:
    def done():
        st = cl.stats()
        ok = (st["proxy_membership_phase"] == "stable" and st["proxy_rebalance_pass"] == "idle"
              and int(st["proxy_rebalance_passes"]) >= passes)
        return st if ok else None
    return ph.wait_until(done, timeout, interval=0.1, what=f"{passes} rebalance passes and a stable membership")


def misplaced(cl: ph.Cluster, ring: ketama.Ring, members, keys, replicas: int) -> list[str]:
    """Keys the members hold other than on exactly their replica set (nodes
    by index into `members`). A node that left is not a member: nothing reads
    it, and it is flushed should it join again."""
    placement = cl.placement(keys)
    out = []
    for k in keys:
        want = sorted(members[i] for i in ring.replica_set(k, replicas))
        have = sorted(i for i, _ in placement[k] if i in members)
        if have and have != want:
            out.append(f"{k}: on {have}, owners {want}")
    return out


def assert_placed_and_readable_with_one_frozen(cl: ph.Cluster, conn, model, keys, members, frozen: int) -> None:
    """Every key on exactly its two owners among `members`; then, with node
    `frozen` stopped, every key still reads (hit 1.000), none stale. (One
    node only: a frozen node is marked down, and flushed when it answers.)"""
    bad = misplaced(cl, ring_of(cl, members), members, keys, 2)
    assert not bad, f"{len(bad)} keys not on exactly their two owners: {bad[:5]}"
    cl.sigstop(frozen)
    try:
        read_all(conn, model, keys)
    finally:
        cl.sigcont(frozen)
    assert not model.stale and not model.resurrected, model.problems()
    assert model.hits == model.reads, f"hit rate {model.hits / model.reads:.4f} with node {frozen} frozen"


def wait_pass_after(cl: ph.Cluster, passes: int, what: str) -> dict:
    """Stats once a pass beyond the first `passes` ran to its end."""
    return ph.wait_until(lambda: (lambda s: s if s["proxy_rebalance_pass"] == "idle"
                                  and int(s["proxy_rebalance_passes"]) > passes else None)(cl.stats()),
                         30, interval=0.1, what=what)


def seeded(cluster_factory, replicas: int, prefix: str):
    """A cluster of 3 nodes with the rebalance on, N_KEYS keys written."""
    cl = cluster_factory(n=3, replicas=replicas, options=OPTIONS)
    conn = cl.raw(timeout=20)
    model = Model()
    keys = [f"{prefix}:{i}" for i in range(N_KEYS)]
    set_all(conn, model, keys)
    return cl, conn, model, keys


def test_scale_out_then_an_original_node_frozen_reads_every_key(cluster_factory):
    cl, conn, model, keys = seeded(cluster_factory, 2, "rb")
    new = cl.add_node()
    reload_to(cl, [0, 1, 2, new])
    st = wait_stable_and_rebalanced(cl, passes=2)       # the copy pass, then the clean pass
    assert int(st["proxy_rebalance_keys_copied"]) > 0 and st["proxy_rebalance_failures"] == "0", st
    assert_placed_and_readable_with_one_frozen(cl, conn, model, keys, [0, 1, 2, new], frozen=0)


def test_draining_a_node_with_one_replica_keeps_its_keys(cluster_factory):
    cl, conn, model, keys = seeded(cluster_factory, 1, "dr")
    reload_to(cl, [0, 1])                               # nothing is read meanwhile
    wait_stable_and_rebalanced(cl, passes=2)
    cl.kill_node(2)
    read_all(conn, model, keys)
    assert not model.stale and not model.resurrected, model.problems()
    hit_rate = model.hits / model.reads
    print(f"drain, replicas 1: hit rate {hit_rate:.4f}")
    assert hit_rate >= 0.999, f"hit rate {hit_rate:.4f} after draining node 2"


@pytest.mark.parametrize("replicas", [1, 2])
def test_scale_out_and_back_leaves_every_key_on_its_replicas(cluster_factory, replicas):
    cl, conn, model, keys = seeded(cluster_factory, replicas, "sb")
    new = cl.add_node()
    reload_to(cl, [0, 1, 2, new])
    set_all(conn, model, keys[: N_KEYS // 2])           # overwrites during the change
    delete_all(conn, model, keys[::9])
    wait_stable_and_rebalanced(cl, passes=2)
    set_all(conn, model, keys[N_KEYS // 2:])            # and after it
    delete_all(conn, model, keys[1::9])
    reload_to(cl, [0, 1, 2])
    read_all(conn, model, keys)
    st = wait_stable_and_rebalanced(cl, passes=4)
    read_all(conn, model, keys)
    assert not model.stale and not model.resurrected, model.problems()
    live = [k for k in keys if model.latest[k] is not None]
    bad = misplaced(cl, ring_of(cl, [0, 1, 2]), [0, 1, 2], keys, replicas)
    assert not bad, f"{len(bad)} keys not on exactly their replica set: {bad[:5]}"
    placement = cl.placement(live)
    hits = sum(1 for k in live if any(i != new and v == model.latest[k] for i, v in placement[k]))
    progress = {k: v for k, v in st.items() if k.startswith("proxy_rebalance_")}
    print(f"3 -> 4 -> 3, replicas {replicas}: {hits} of {len(live)} live keys kept; {progress}")
    assert hits >= 0.999 * len(live), f"only {hits} of {len(live)} live keys kept"


def test_a_node_that_comes_back_empty_is_refilled_without_reads(cluster_factory):
    """Replicas 2: node 0 is killed and restarted empty. Once it is up again
    (flushed), a repair pass copies its keys back from the other replicas,
    nothing read meanwhile: every key sits on exactly its two owners, and
    with node 1 frozen every key still reads (hit 1.000)."""
    cl, conn, model, keys = seeded(cluster_factory, 2, "rf")
    passes = int(cl.stats()["proxy_rebalance_passes"])
    cl.kill_node(0)
    ph.get_each(conn, keys)                # the proxy notices at its next request to node 0
    cl.wait_node_state(0, "down", timeout=10)
    cl.restart_node(0)
    cl.wait_node_state(0, "up", timeout=15)
    st = wait_pass_after(cl, passes, "the refill pass")
    assert int(st["proxy_rebalance_keys_copied"]) > 0 and st["proxy_rebalance_failures"] == "0", st
    held_by_0 = len(cl.node_contents(0, keys))
    owned_by_0 = sum(1 for k in keys if 0 in ring_of(cl, [0, 1, 2]).replica_set(k, 2))
    print(f"refill: node 0 holds {held_by_0} of the {owned_by_0} keys it owns; "
          f"{st['proxy_rebalance_keys_copied']} copied")
    assert_placed_and_readable_with_one_frozen(cl, conn, model, keys, [0, 1, 2], frozen=1)


def test_rebalance_on_demand_restores_copies_and_deletes_orphans(cluster_factory, tmp_path):
    """`memcluster-admin rebalance`: copies lost at one replica behind the
    proxy's back come back, a copy at a node that does not own its key goes;
    refused (409, exit 1) while a pass is under way and with rebalance off."""
    token = "rebalance-test-token-0123456789"
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    cl = cluster_factory(n=3, replicas=2, metrics=True, options={**OPTIONS, "admin_token": token})
    conn = cl.raw(timeout=20)
    model = Model()
    keys = [f"od:{i}" for i in range(N_KEYS)]
    set_all(conn, model, keys)
    ring = ring_of(cl, [0, 1, 2])
    # behind the proxy's back: node 1 loses its copies, node 2 gets one it does not own
    lost = [k for k in keys if 1 in ring.replica_set(k, 2)][:300]
    with cl.node_client(1) as c:
        for k in lost:
            assert c.line(f"delete {k}") == b"DELETED"
    orphan = next(k for k in (f"orphan:{i}" for i in range(1000)) if 2 not in ring.replica_set(k, 2))
    with cl.node_client(2) as c:
        assert c.set(orphan, b"nobody owns me here") == b"STORED"
    admin_endpoint = f"{cl.metrics_addr[0]}:{cl.metrics_addr[1]}"

    from test_admin import admin
    r = admin("rebalance", "--admin", admin_endpoint)
    assert r.returncode == 1 and "401" in r.stderr, (r.returncode, r.stdout, r.stderr)
    passes = int(cl.stats()["proxy_rebalance_passes"])
    r = admin("rebalance", "--admin", admin_endpoint, "--token-file", str(token_file))
    assert r.returncode == 0 and "rebalance started" in r.stdout, (r.stdout, r.stderr)
    r2 = admin("rebalance", "--admin", admin_endpoint, "--token-file", str(token_file))
    st = cl.stats()
    if st["proxy_rebalance_pass"] != "idle":
        assert r2.returncode == 1 and "409" in r2.stderr and "under way" in r2.stderr, (r2.stdout, r2.stderr)
    st = wait_pass_after(cl, passes, "the repair pass")
    assert st["proxy_rebalance_failures"] == "0", st
    assert int(st["proxy_rebalance_orphans_deleted"]) >= 1, st
    held = cl.node_contents(1, lost)
    assert len(held) == len(lost), f"{len(lost) - len(held)} of {len(lost)} lost copies not restored"
    assert cl.node_contents(2, [orphan]) == {}, "the orphan copy is still there"
    bad = misplaced(cl, ring, [0, 1, 2], keys, 2)
    assert not bad, f"{len(bad)} keys not on exactly their two owners: {bad[:5]}"

    reloads = int(cl.stats()["proxy_reloads"])
    cl.write_config(rebalance=False)
    cl.sighup()
    ph.wait_until(lambda: int(cl.stats()["proxy_reloads"]) > reloads, 5, what="reload")
    r = admin("rebalance", "--admin", admin_endpoint, "--token-file", str(token_file))
    assert r.returncode == 1 and "409" in r.stderr and "rebalance: false" in r.stderr, (r.stdout, r.stderr)


def test_a_reload_that_keeps_the_membership_resumes_the_repair(cluster_factory, tmp_path):
    """A repair pass at 1,000 keys/s is under way when the configuration is
    reloaded with another log level: the pass goes on (from the node it was
    listing) and still restores every lost copy."""
    token = "rebalance-test-token-0123456789"
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    cl = cluster_factory(n=3, replicas=2, metrics=True,
                         options={**OPTIONS, "admin_token": token, "rebalance_keys_per_s": 1000})
    conn = cl.raw(timeout=20)
    model = Model()
    keys = [f"rs:{i}" for i in range(N_KEYS)]
    set_all(conn, model, keys)
    ring = ring_of(cl, [0, 1, 2])
    lost = [k for k in keys if 2 in ring.replica_set(k, 2)]
    with cl.node_client(2) as c:
        for k in lost:
            assert c.line(f"delete {k}") == b"DELETED"
    from test_admin import admin
    r = admin("rebalance", "--admin", f"{cl.metrics_addr[0]}:{cl.metrics_addr[1]}", "--token-file", str(token_file))
    assert r.returncode == 0, r.stderr
    time.sleep(1.0)
    reloads = int(cl.stats()["proxy_reloads"])
    cl.write_config(log_level="debug")
    cl.sighup()
    ph.wait_until(lambda: int(cl.stats()["proxy_reloads"]) > reloads, 5, what="reload")
    assert cl.stats()["proxy_rebalance_pass"] == "repairing", "the reload stopped the repair"
    ph.wait_until(lambda: cl.stats()["proxy_rebalance_pass"] == "idle", 30, interval=0.2, what="the repair's end")
    assert "rebalance resumed after a reload" in cl.proxy_log()
    held = cl.node_contents(2, lost)
    assert len(held) == len(lost), f"{len(lost) - len(held)} of {len(lost)} lost copies not restored"


def test_a_node_added_while_a_restarted_node_is_still_empty_loses_no_key(cluster_factory):
    """Replicas 2: node 0 is restarted empty, and a fourth node is added at
    once, before anything refilled node 0. Keys whose copy at node 0 was lost
    still have one at their other previous owner; the change copies from
    every previous owner, so once it is over every key reads (hit 1.000)."""
    cl, conn, model, keys = seeded(cluster_factory, 2, "ra")
    cl.kill_node(0)
    ph.get_each(conn, keys)                # the proxy notices
    cl.wait_node_state(0, "down", timeout=10)
    cl.restart_node(0)
    cl.wait_node_state(0, "up", timeout=15)
    new = cl.add_node()
    reload_to(cl, [0, 1, 2, new])
    wait_stable_and_rebalanced(cl, passes=2)
    read_all(conn, model, keys)
    assert not model.stale and not model.resurrected, model.problems()
    print(f"restart then add: hit rate {model.hits / model.reads:.4f}")
    assert model.hits == model.reads, f"hit rate {model.hits / model.reads:.4f} after the change"
