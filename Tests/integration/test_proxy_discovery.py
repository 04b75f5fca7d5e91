"""DNS discovery: the proxy's node list from a name, as a Kubernetes
headless Service publishes the pods of a StatefulSet (`discovery:`).

A real dnsmasq answers from a hosts file the tests rewrite (SIGHUP makes it
read the file again). The cache nodes listen on distinct loopback addresses
(127.0.0.2, .3, ...) on one port, as pods do on their own addresses; the SRV
tests use distinct ports on 127.0.0.1 instead.

- the proxy starts with the nodes the name resolves to, sorted;
- a record added is a node within refresh_s + 1 s, keys stay readable and
  are warmed up on the new node; a record removed removes its node;
- two proxies following one name show the same nodes and generation, and the
  same generation as a proxy given those nodes under `nodes:`;
- the DNS server stopped, or an answer with no address: the running list
  stays and the failure is counted; answers come back: followed again;
- malformed answers (pointer loops, huge counts, cut messages, noise, a
  truncated answer whose TCP retry is cut) do not crash the proxy;
- SRV records: a node per record, named after its target;
- a reload that turns `nodes:` into `discovery:` looks the name up at once;
- a change that comes from DNS is a membership change as a file's is: the
  node that joins is flushed, and an answer that changes again while the
  change is under way waits for it to end (logged once);
- two proxies following one name while its records change under a mixed load
  of overwrites, deletes and reads through both: no stale read, no deleted
  key read, and both on one generation.

A node removed from the records stays in `stats nodes`, "leaving", until the
membership change is over; `members` leaves it out.
"""

from __future__ import annotations

import random
import socket
import time

import pytest

import dns_harness
import harness
import proxy_harness as ph
from test_proxy_transitions import Model, mixed_batch, read_all, set_all

NAME = "mc.test"
REFRESH_S = 1


def pick_port(hosts: list[str]) -> int:
    """A port free on every one of `hosts` (nodes share one port, as pods do)."""
    for _ in range(50):
        port = harness.free_port()
        try:
            for host in hosts:
                with socket.socket() as s:
                    s.bind((host, port))
            return port
        except OSError:
            continue
    raise RuntimeError(f"no port free on all of {hosts}")


@pytest.fixture
def dns():
    """dns(hosts, srv=()) -> dns_harness.Dnsmasq, stopped at teardown."""
    made: list[dns_harness.Dnsmasq] = []

    def make(hosts, srv=()):
        d = dns_harness.Dnsmasq(hosts, srv=srv)
        made.append(d)
        return d

    try:
        yield make
    finally:
        for d in made:
            d.stop()


def discovering_cluster(cluster_factory, dns, n: int, replicas=2, options=None, **kw):
    """n nodes on 127.0.0.2.. on one port, dnsmasq naming them all `mc.test`,
    and a proxy following that name every second."""
    hosts = [f"127.0.0.{i + 2}" for i in range(n)]
    port = pick_port(hosts + ["127.0.0.9"])
    server = dns({NAME: hosts})
    cluster = cluster_factory(n=n, replicas=replicas, node_hosts=hosts, node_ports=[port] * n, options=options,
                              discovery={"name": NAME, "port": port, "refresh_s": REFRESH_S, "server": server.server},
                              **kw)
    return cluster, server, port


def addresses(cluster) -> list[str]:
    """The members' addresses in ring order (not the nodes leaving)."""
    return members(cluster.stats("nodes"))


def members(st: dict) -> list[str]:
    out, i = [], 0
    while f"node:{i}:address" in st:
        if st[f"node:{i}:membership"] == "member":
            out.append(st[f"node:{i}:address"])
        i += 1
    return out


def stat(cluster, name: str) -> int:
    return int(cluster.stats()[name])


def test_the_proxy_starts_with_the_nodes_the_name_resolves_to(cluster_factory, dns):
    cluster, server, port = discovering_cluster(cluster_factory, dns, n=3)
    assert addresses(cluster) == [f"127.0.0.{i}:{port}" for i in (2, 3, 4)]
    assert cluster.node_states() == ["up"] * 3
    c = cluster.raw()
    keys = [f"d{i}" for i in range(300)]
    ph.set_many(c, [(k, b"v" + k.encode()) for k in keys])
    assert ph.multi_get(c, keys) == {k: b"v" + k.encode() for k in keys}
    # Every node holds some: the ring spans the discovered nodes.
    placement = cluster.placement(keys)
    assert {i for holders in placement.values() for i, _ in holders} == {0, 1, 2}
    ph.wait_until(lambda: stat(cluster, "proxy_discovery_lookups") >= 2, 4, what="the name looked up again")
    st = cluster.stats()
    assert st["proxy_discovery_changes"] == "0" and st["proxy_discovery_failures"] == "0", st
    assert "discovery: the first node list" in cluster.proxy_log()


def test_an_added_record_is_a_node_within_refresh_s_and_keys_warm_up(cluster_factory, dns):
    cluster, server, port = discovering_cluster(cluster_factory, dns, n=2, replicas=1)
    c = cluster.raw()
    keys = [f"k{i}" for i in range(600)]
    ph.set_many(c, [(k, b"v" + k.encode()) for k in keys])
    generation = cluster.stats()["proxy_membership_generation"]
    cluster.add_node(host="127.0.0.4", port=port)
    server.reload({NAME: ["127.0.0.2", "127.0.0.3", "127.0.0.4"]}, NAME, ["127.0.0.2", "127.0.0.3", "127.0.0.4"])
    t0 = time.monotonic()
    ph.wait_until(lambda: len(addresses(cluster)) == 3, REFRESH_S + 2, what="the third node in force")
    assert time.monotonic() - t0 <= REFRESH_S + 1, "a new record is followed within refresh_s + 1 s"
    assert addresses(cluster) == [f"127.0.0.{i}:{port}" for i in (2, 3, 4)]
    st = cluster.stats()
    assert st["proxy_discovery_changes"] == "1" and st["proxy_membership_generation"] != generation, st
    # Warm-up: every key still reads, those that moved are copied to the new node.
    assert ph.multi_get(c, keys) == {k: b"v" + k.encode() for k in keys}
    moved = cluster.node_contents(2, keys)
    assert 0 < len(moved) < len(keys)
    assert int(cluster.stats()["proxy_warmup_hits"]) >= len(moved)
    assert "discovery: the node list changed" in cluster.proxy_log()


def test_a_removed_record_removes_its_node(cluster_factory, dns):
    cluster, server, port = discovering_cluster(cluster_factory, dns, n=3, replicas=2)
    c = cluster.raw()
    keys = [f"r{i}" for i in range(300)]
    ph.set_many(c, [(k, b"x") for k in keys])
    server.reload({NAME: ["127.0.0.2", "127.0.0.4"]}, NAME, ["127.0.0.2", "127.0.0.4"])
    t0 = time.monotonic()
    ph.wait_until(lambda: addresses(cluster) == [f"127.0.0.2:{port}", f"127.0.0.4:{port}"], REFRESH_S + 2,
                  what="the removed node gone")
    assert time.monotonic() - t0 <= REFRESH_S + 1
    # Replicas 2: every key had a copy on a node that stays.
    assert len(ph.multi_get(c, keys)) == len(keys)
    assert stat(cluster, "proxy_discovery_changes") == 1


def test_two_proxies_following_one_name_agree(cluster_factory, dns):
    cluster, server, port = discovering_cluster(cluster_factory, dns, n=3)
    second_port = harness.free_port()
    second = ph.spawn([ph.proxy_binary(), "--config", cluster.config_path, "--listen", f"127.0.0.1:{second_port}"],
                      harness.HOST, second_port, prefix="mcproxy2-")
    # A third proxy given the same nodes in a list: the same membership.
    listed_port = harness.free_port()
    listed = ph.spawn([ph.proxy_binary(), "--listen", f"127.0.0.1:{listed_port}", "--replicas", "2",
                       *[x for i in (4, 2, 3) for x in ("--node", f"127.0.0.{i}:{port}")]],
                      harness.HOST, listed_port, prefix="mcproxy3-")
    try:
        def view(p):
            with harness.TextClient((harness.HOST, p)) as t:
                st = t.stats("nodes")
            return st["generation"], members(st)

        first = view(cluster.addr[1])
        assert view(second_port) == first
        assert view(listed_port)[0] == first[0]
        server.reload({NAME: ["127.0.0.2", "127.0.0.3"]}, NAME, ["127.0.0.2", "127.0.0.3"])
        ph.wait_until(lambda: view(cluster.addr[1]) == view(second_port) and view(second_port)[0] != first[0],
                      REFRESH_S + 2, what="both proxies on the new membership")
        assert view(second_port)[1] == [f"127.0.0.2:{port}", f"127.0.0.3:{port}"]
    finally:
        second.stop()
        listed.stop()


def test_the_dns_server_stopped_keeps_the_running_list(cluster_factory, dns):
    cluster, server, port = discovering_cluster(cluster_factory, dns, n=2)
    generation = cluster.stats()["proxy_membership_generation"]
    c = cluster.client()
    assert c.set("kept", b"1") == b"STORED"
    server.kill()
    ph.wait_until(lambda: stat(cluster, "proxy_discovery_failures") >= 2, REFRESH_S * 2 + 2,
                  what="failed look-ups counted")
    st = cluster.stats()
    assert st["proxy_membership_generation"] == generation and st["proxy_nodes"] == "2", st
    assert c.get("kept") == b"1"
    log = cluster.proxy_log()
    assert "discovery failed; the running node list stays" in log and "connection refused" in log
    # Logged when it starts, not at every look-up.
    assert log.count("discovery failed") == 1
    # Back, with one node fewer: followed again.
    server.write_hosts({NAME: ["127.0.0.3"]})
    server.start()
    ph.wait_until(lambda: addresses(cluster) == [f"127.0.0.3:{port}"], REFRESH_S + 2, what="followed again")
    assert "discovery: the name resolves again" in cluster.proxy_log()


def test_an_answer_without_addresses_keeps_the_running_list(cluster_factory, dns):
    cluster, server, port = discovering_cluster(cluster_factory, dns, n=2, metrics=True)
    before = stat(cluster, "proxy_discovery_failures")
    server.write_hosts({"other.test": ["127.0.0.9"]})
    server.proc.send_signal(dns_harness.signal.SIGHUP)
    ph.wait_until(lambda: stat(cluster, "proxy_discovery_failures") >= before + 2, REFRESH_S * 2 + 2,
                  what="empty answers counted as failures")
    assert addresses(cluster) == [f"127.0.0.2:{port}", f"127.0.0.3:{port}"]
    status, _, body = cluster.http("GET", "/metrics")
    assert status == 200
    failures = [line for line in body.splitlines() if line.startswith("memcluster_proxy_discovery_failures_total ")]
    assert failures and int(failures[0].split()[1]) >= 2, body
    assert "memcluster_proxy_discovery_lookups_total " in body and "memcluster_proxy_discovery_changes_total 0" in body


def test_malformed_answers_do_not_crash_the_proxy(cluster_factory, dns):
    cluster, server, port = discovering_cluster(cluster_factory, dns, n=2)
    generation = cluster.stats()["proxy_membership_generation"]
    garbage = dns_harness.GarbageDNSServer()
    try:
        # Follow the garbage server (the file is watched: no signal needed).
        cluster.discovery = {**cluster.discovery, "server": garbage.server, "timeout_ms": 100}
        cluster.write_config()
        ph.wait_until(lambda: garbage.datagrams >= 8 and garbage.connections >= 1, 15,
                      what="every kind of garbage sent, the TCP retry among them")
        assert cluster.proxy.alive()
        st = cluster.stats()
        assert st["proxy_membership_generation"] == generation and st["proxy_nodes"] == "2", st
        assert int(st["proxy_discovery_failures"]) >= 2, st
        c = cluster.client()
        assert c.set("still", b"here") == b"STORED" and c.get("still") == b"here"
        assert "the last unusable answer: " in cluster.proxy_log()
        # Back to the real server: followed again.
        cluster.discovery = {**cluster.discovery, "server": server.server}
        cluster.write_config()
        server.reload({NAME: ["127.0.0.2"]}, NAME, ["127.0.0.2"])
        ph.wait_until(lambda: addresses(cluster) == [f"127.0.0.2:{port}"], 5, what="the real server followed again")
    finally:
        garbage.stop()


def test_srv_records_name_their_nodes(cluster_factory, dns):
    cluster = cluster_factory(n=3, replicas=2, start_proxy=False)
    targets = ["mc-0.mc.test", "mc-1.mc.test", "mc-2.mc.test"]
    hosts = {t: ["127.0.0.1"] for t in targets}
    service = "_memcache._tcp.mc.test"
    records = [(service, t, cluster.nodes[i].port) for i, t in enumerate(targets[:2])]
    server = dns(hosts, srv=records)
    cluster.discovery = {"srv": service, "refresh_s": REFRESH_S, "server": server.server}
    cluster.start_proxy()
    st = cluster.stats("nodes")
    assert [(st[f"node:{i}:name"], st[f"node:{i}:address"]) for i in range(2)] == [
        (f"{t}:{cluster.nodes[i].port}", f"127.0.0.1:{cluster.nodes[i].port}") for i, t in enumerate(targets[:2])]
    c = cluster.raw()
    keys = [f"s{i}" for i in range(300)]
    ph.set_many(c, [(k, b"s") for k in keys])
    # --srv-host records are fixed at start: a third one needs a restart.
    server.restart(srv=records + [(service, targets[2], cluster.nodes[2].port)])
    ph.wait_until(lambda: len(addresses(cluster)) == 3, REFRESH_S + 3, what="the third SRV record followed")
    assert cluster.stats("nodes")["node:2:name"] == f"{targets[2]}:{cluster.nodes[2].port}"
    assert len(ph.multi_get(c, keys)) == len(keys)


def test_a_reload_from_nodes_to_discovery_looks_the_name_up_at_once(cluster_factory, dns):
    hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    port = pick_port(hosts)
    server = dns({NAME: hosts})
    # No warm-up: the change to two nodes is over at once, and the next one
    # is not queued behind it.
    cluster = cluster_factory(n=3, replicas=2, node_hosts=hosts, node_ports=[port] * 3,
                              options={"watch_config": False, "warmup_s": 0})
    cluster.write_config(node_indices=[0, 1])
    cluster.sighup()
    ph.wait_until(lambda: len(addresses(cluster)) == 2, 5, what="two listed nodes")
    # refresh_s is long: only the look-up a reload starts can bring the third node.
    cluster.discovery = {"name": NAME, "port": port, "refresh_s": 3600, "server": server.server}
    cluster.write_config()
    cluster.sighup()
    ph.wait_until(lambda: len(addresses(cluster)) == 3, 3, what="the name looked up at the reload")
    assert stat(cluster, "proxy_discovery_changes") == 1
    # And back to a list: discovery stops.
    cluster.discovery = None
    cluster.write_config(node_indices=[0])
    cluster.sighup()
    ph.wait_until(lambda: len(addresses(cluster)) == 1, 5, what="the list again")
    lookups = stat(cluster, "proxy_discovery_lookups")
    time.sleep(1.5)
    assert stat(cluster, "proxy_discovery_lookups") == lookups


def test_a_dns_change_is_a_membership_change_and_waits_for_the_one_under_way(cluster_factory, dns):
    """The records gain a node, then lose another while the first change is
    under way (warmup_s 5): the second waits for the first to end, as a
    file's would, and is logged once however often the name is asked."""
    hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    port = pick_port(hosts)
    server = dns({NAME: hosts[:2]})
    cluster = cluster_factory(n=2, replicas=2, node_hosts=hosts[:2], node_ports=[port] * 2,
                              options={"warmup_s": 5},
                              discovery={"name": NAME, "port": port, "refresh_s": REFRESH_S, "server": server.server})
    joining = cluster.add_node(host=hosts[2], port=port)
    # A copy from an earlier time in the tier: the joining node is flushed before it serves.
    with harness.TextClient((hosts[2], port)) as t:
        assert t.set("planted", b"old") == b"STORED"
    first = cluster.stats()["proxy_membership_generation"]
    server.reload({NAME: hosts}, NAME, hosts)
    ph.wait_until(lambda: cluster.stats()["proxy_membership_generation"] != first, REFRESH_S + 2,
                  what="the added record in force")
    st = cluster.stats()
    second = st["proxy_membership_generation"]
    assert st["proxy_membership_phase"] == "warming", st
    ph.wait_until(lambda: not cluster.node_contents(joining, ["planted"]), 3, what="the joining node flushed")
    with harness.TextClient(cluster.addr) as t:
        assert t.get("planted") is None

    server.reload({NAME: hosts[1:]}, NAME, hosts[1:])
    time.sleep(REFRESH_S * 2 + 0.3)        # two look-ups or more see the new answer
    st = cluster.stats()
    assert st["proxy_membership_generation"] == second and addresses(cluster) == [f"{h}:{port}" for h in hosts], st
    queued = [line for line in cluster.proxy_log().splitlines() if "membership change queued" in line]
    assert len(queued) == 1 and "origin=discovery" in queued[0], queued
    ph.wait_until(lambda: addresses(cluster) == [f"{h}:{port}" for h in hosts[1:]], 8,
                  what="the queued answer installed once the change under way ended")
    st = cluster.stats()
    assert st["proxy_membership_generation"] not in (first, second) and st["proxy_discovery_changes"] == "2", st


@pytest.mark.parametrize("change", ["add", "remove"])
def test_two_proxies_following_one_name_serve_no_stale_value(cluster_factory, dns, change):
    """Proxies A and B follow one name (refresh_s 1, B's timer started 0.5 s
    after A's); the records change under a mixed load of overwrites, deletes
    and reads through both. membership_settle_ms 2500 is above the spread of
    their look-ups. Every value written is unique: a read returns the latest
    value written or misses; a deleted key misses."""
    settle_ms, warmup_s = 2500, 1
    n0 = 3 if change == "add" else 4
    hosts = [f"127.0.0.{i + 2}" for i in range(4)]
    port = pick_port(hosts + ["127.0.0.9"])
    server = dns({NAME: hosts[:n0]})
    a = cluster_factory(n=n0, replicas=2, node_hosts=hosts[:n0], node_ports=[port] * n0,
                        options={"membership_settle_ms": settle_ms, "warmup_s": warmup_s},
                        discovery={"name": NAME, "port": port, "refresh_s": REFRESH_S, "server": server.server})
    time.sleep(0.5)
    b_port = harness.free_port()
    b = ph.spawn([ph.proxy_binary(), "--config", a.config_path, "--listen", f"{harness.HOST}:{b_port}"],
                 harness.HOST, b_port, prefix="mcproxy2-")
    try:
        proxies = {"A": a.addr[1], "B": b_port}

        def generation(p: int) -> str:
            with harness.TextClient((harness.HOST, p)) as t:
                return t.stats()["proxy_membership_generation"]

        before = generation(a.addr[1])
        assert generation(b_port) == before
        if change == "add":
            a.add_node(host=hosts[3], port=port)
            new_hosts = hosts
        else:
            new_hosts = hosts[:3]
        conns = [a.raw(timeout=20), a.raw(timeout=20, addr=(harness.HOST, b_port))]
        model = Model()
        keys = [f"dns2:{i}" for i in range(1500)]
        set_all(conns[0], model, keys)
        rng = random.Random(11)

        start = time.monotonic()
        t_change = None
        learned: dict[str, float] = {}
        end = start + 0.7 + REFRESH_S + (2 * settle_ms) / 1000 + warmup_s + 1.5
        next_poll = start
        ops = turn = 0
        # Load until the change is over on both proxies (a bound on operations
        # only keeps a runaway loop finite).
        while time.monotonic() < end and ops < 5_000_000:
            now = time.monotonic()
            if t_change is None and now - start >= 0.7:
                server.reload({NAME: new_hosts}, NAME, new_hosts)
                t_change = time.monotonic()
            if t_change is not None and len(learned) < 2 and now >= next_poll:
                for label, p in proxies.items():
                    if label not in learned and generation(p) != before:
                        learned[label] = time.monotonic() - t_change
                next_poll = now + 0.05
            ops += mixed_batch(conns[turn % 2], model, keys, rng)
            turn += 1
        load_s = time.monotonic() - start
        assert t_change is not None and len(learned) == 2, learned
        ph.wait_until(lambda: generation(a.addr[1]) == generation(b_port) != before, 5,
                      what="both proxies on one generation")
        after = generation(b_port)
        for conn in conns:
            read_all(conn, model, keys)
        spread = abs(learned["A"] - learned["B"])
        print(f"{change}: {ops} operations in {load_s:.1f} s, {model.reads} reads, hit rate {model.hits / model.reads:.4f}, "
              f"{len(model.stale)} stale, {len(model.resurrected)} lost deletes; learned "
              f"A +{learned['A']:.2f} s, B +{learned['B']:.2f} s (apart {spread:.2f} s); generation {before} -> {after}")
        assert not model.stale and not model.resurrected, model.problems()
        assert spread * 1000 < settle_ms, learned
        for p in proxies.values():
            with harness.TextClient((harness.HOST, p)) as t:
                assert members(t.stats("nodes")) == [f"{h}:{port}" for h in new_hosts]
    finally:
        b.stop()

