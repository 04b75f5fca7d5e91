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
- a reload that turns `nodes:` into `discovery:` looks the name up at once.

A node removed from the records stays in `stats nodes`, "leaving", until the
membership change is over; `members` leaves it out.
"""

from __future__ import annotations

import socket
import time

import pytest

import dns_harness
import harness
import proxy_harness as ph

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
