"""One membership, named and followed: what proxies need to agree on where
keys live.

- two spellings of one node (`localhost:N`, `127.0.0.1:N`) are refused;
- each membership has a generation id, the same for every proxy that places
  keys alike, shown by `stats`, `stats nodes` and `/metrics`;
- a proxy follows its configuration file (`watch_config`, on by default):
  a new node list written to the file is in force within a second, with no
  signal, and two proxies sharing one file reach the same generation;
- a reload that changes a setting only a restart applies says so.
"""

from __future__ import annotations

import os
import subprocess
import time

import harness
import proxy_harness as ph


def generation(cluster, stats_arg: str = "") -> str:
    st = cluster.stats(stats_arg)
    return st["generation"] if stats_arg == "nodes" else st["proxy_membership_generation"]


def test_two_spellings_of_one_node_are_refused(cluster_factory):
    cluster = cluster_factory(n=2, replicas=2, start_proxy=False)
    port = cluster.nodes[0].port
    path = os.path.join(cluster.tmpdir, "dup.yaml")
    with open(path, "w") as f:
        f.write(f"listen: 127.0.0.1:{harness.free_port()}\nnodes:\n  - localhost:{port}\n  - 127.0.0.1:{port}\n")
    out = subprocess.run([ph.proxy_binary(), "--config", path, "--check-config"], capture_output=True, text=True,
                         timeout=20)
    assert out.returncode != 0
    assert f"nodes[1] (127.0.0.1:{port}) and nodes[0] (localhost:{port}) are the same node" in out.stderr + out.stdout


def test_generation_is_shown_everywhere_and_follows_the_node_set(cluster_factory):
    cluster = cluster_factory(n=3, replicas=2, metrics=True)
    first = generation(cluster)
    assert len(first) == 16 and all(c in "0123456789abcdef" for c in first)
    assert generation(cluster, "nodes") == first
    status, _, body = cluster.http("GET", "/metrics")
    assert status == 200 and f'memcluster_proxy_membership{{generation="{first}"}} 1' in body
    # The same nodes in another order, spelled another way: the same membership.
    entries = [f"localhost:{n.port}" for n in reversed(cluster.nodes)]
    cluster.write_config(raw=ph.render_config({**cluster.options}, entries))
    ph.wait_until(lambda: int(cluster.stats()["proxy_reloads"]) >= 1, 5, what="the file change reloaded")
    assert generation(cluster) == first
    # One node fewer: another membership.
    cluster.write_config(node_indices=[0, 1])
    ph.wait_until(lambda: generation(cluster) != first, 5, what="a new generation after a node left")


def test_a_changed_file_is_followed_without_a_signal(cluster_factory):
    cluster = cluster_factory(n=2, replicas=1)
    c = cluster.raw()
    keys = [f"w{i}" for i in range(300)]
    ph.set_many(c, [(k, b"v") for k in keys])
    cluster.add_node()
    t0 = time.monotonic()
    cluster.write_config()
    ph.wait_until(lambda: len(cluster.node_states()) == 3, 3, what="the third node in force")
    assert time.monotonic() - t0 < 1.5, "a change is followed within about a second"
    assert len(ph.multi_get(c, keys)) == len(keys), "warm-up keeps every key readable"
    # A broken file is refused, as by SIGHUP, and the running configuration stays.
    cluster.write_config(raw="nodes: [\n")
    ph.wait_until(lambda: int(cluster.stats()["proxy_reload_failures"]) >= 1, 3, what="the broken file refused")
    assert len(cluster.node_states()) == 3
    assert "reload refused" in cluster.proxy_log()


def test_two_proxies_sharing_one_file_agree(cluster_factory):
    cluster = cluster_factory(n=3, replicas=2)
    port = harness.free_port()
    second = ph.spawn([ph.proxy_binary(), "--config", cluster.config_path, "--listen", f"127.0.0.1:{port}"],
                      harness.HOST, port, prefix="mcproxy2-")
    try:
        def second_generation():
            with harness.TextClient((harness.HOST, port)) as t:
                return t.stats()["proxy_membership_generation"]

        assert second_generation() == generation(cluster)
        cluster.write_config(node_indices=[0, 2])
        # (the removed node stays in `stats nodes`, "leaving", until the change is over)
        ph.wait_until(lambda: generation(cluster) == second_generation() != ""
                      and cluster.stats()["proxy_nodes"] == "2",
                      5, what="both proxies on the new membership")
    finally:
        second.stop()


def test_a_reload_says_which_settings_wait_for_a_restart(cluster_factory):
    cluster = cluster_factory(n=2, replicas=1, metrics=True, options={"watch_config": False})
    cluster.write_config(threads=3, backend_connections=2)
    status, _, body = cluster.http("POST", "/reload")
    assert status == 200
    assert body.strip() == "OK, except threads, backend_connections: they take effect only at restart"
    cluster.write_config()
    status, _, body = cluster.http("POST", "/reload")
    assert (status, body.strip()) == (200, "OK")
