"""Node failures behind the proxy, with real processes.

kill -9 (3 nodes, replicas 2, 1,000 keys): every key stays readable through
the proxy (single gets and multi-gets) with no client error, writes keep
answering STORED, `stats nodes` shows the node down; restarted empty on the
same port it is `up` again within seconds and reads of the keys it owns
still hit, with the latest values (the proxy refills it from the replicas).

Partitions healed without stale reads: a node is cut off (SIGSTOP, or a real
link cut between two network namespaces), new values are written while it
is away (they reach only the other replica), it comes back; through the
proxy the keys then read as the NEW values, never the old ones (the proxy
flushed the node before letting it serve), during the recovery and after.

Each scenario runs once (a module fixture) and records what it saw; the
tests below assert one property each, so a failure names the property.
"""

from __future__ import annotations

import time

import pytest

import harness
import ketama
import proxy_harness as ph

N_KEYS = 1000


class Observed(dict):
    """What a scenario saw: name -> value, or the exception that stopped it
    (re-raised when a test asks for that value)."""

    def need(self, name):
        if name not in self:
            err = self.get("_error")
            raise AssertionError(f"the scenario stopped before {name!r}: {err!r}\n{self.get('_cluster', '')}")
        return self[name]


def misses_and_errors(keys, replies, expected: dict) -> list[str]:
    """Problems in pipelined single-get replies: errors, misses, wrong values."""
    out = []
    for k, (vals, end) in zip(keys, replies):
        if end != b"END":
            out.append(f"{k}: error {end!r}")
        elif not vals:
            out.append(f"{k}: miss (expected {expected[k]!r})")
        elif vals[0][2] != expected[k]:
            out.append(f"{k}: {vals[0][2]!r} (expected {expected[k]!r})")
    return out


def multi_problems(conn, keys, expected: dict, batch: int = 250) -> list[str]:
    out = []
    for s in range(0, len(keys), batch):
        chunk = keys[s:s + batch]
        conn.send(b"get " + " ".join(chunk).encode() + b"\r\n")
        [(vals, end)] = ph.read_retrievals(conn, 1)
        if end != b"END":
            out.append(f"multi-get of {len(chunk)} keys ended with {end!r}")
            continue
        got = {k: v for k, _f, v, _c in vals}
        for k in chunk:
            if k not in got:
                out.append(f"{k}: miss in a multi-get (expected {expected[k]!r})")
            elif got[k] != expected[k]:
                out.append(f"{k}: {got[k]!r} in a multi-get (expected {expected[k]!r})")
    return out


def short(problems: list[str], n: int = 12) -> str:
    return f"{len(problems)} problems: " + "; ".join(problems[:n]) + (" ..." if len(problems) > n else "")


# --------------------------------------------------------------------------
# kill -9 and restart
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def killed(proxy_bin):
    obs = Observed()
    cl = ph.Cluster(n=3, replicas=2)
    try:
        victim = 0
        keys = [f"fo:{i}" for i in range(N_KEYS)]
        v1 = {k: b"v1-%d" % i for i, k in enumerate(keys)}
        conn = cl.raw(timeout=15)
        assert set(ph.set_many(conn, v1.items())) == {b"STORED"}
        ring = ketama.Ring([(n.host, n.port, 1, None) for n in cl.nodes])
        obs["primary_on_victim"] = [k for k in keys if ring.owner(k) == victim]
        obs["on_victim"] = sorted(cl.node_contents(victim, keys))
        obs["keys"] = keys

        cl.kill_node(victim)
        # at once, before the proxy can have noticed anything
        obs["single_while_down"] = misses_and_errors(keys, ph.get_each(conn, keys), v1)
        obs["multi_while_down"] = multi_problems(conn, keys, v1)
        conn.send(b"get " + " ".join(keys).encode() + b"\r\n")
        [(vals, end)] = ph.read_retrievals(conn, 1)
        obs["multi1000_while_down"] = (end, len(vals))
        # writes: new values for every other key (a third of them owned by the victim)
        v2 = dict(v1)
        v2.update({k: b"v2-%d" % i for i, k in enumerate(keys) if i % 2 == 0})
        obs["write_replies_while_down"] = ph.set_many(conn, [(k, v2[k]) for k in keys[::2]])
        obs["reads_after_writes_while_down"] = misses_and_errors(keys, ph.get_each(conn, keys), v2)
        try:
            obs["seconds_to_down"] = cl.wait_node_state(victim, "down", timeout=5)
        except TimeoutError as e:
            obs["seconds_to_down"] = e
        obs["stats_while_down"] = cl.stats()

        t0 = time.monotonic()
        cl.restart_node(victim)
        try:
            cl.wait_node_state(victim, "up", timeout=15)
            obs["seconds_to_up"] = time.monotonic() - t0
        except TimeoutError as e:
            obs["seconds_to_up"] = e
        # after its return: half of the keys by single gets, the other half by
        # multi-gets (disjoint, so one cannot warm the other)
        single_keys, multi_keys = keys[0::2][:250] + keys[1::2][:250], keys[0::2][250:] + keys[1::2][250:]
        mine = set(obs["primary_on_victim"])
        obs["single_keys_on_victim"] = len([k for k in single_keys if k in mine])
        obs["multi_keys_on_victim"] = len([k for k in multi_keys if k in mine])
        obs["multi_after_up"] = multi_problems(conn, multi_keys, v2)
        obs["single_after_up"] = misses_and_errors(single_keys, ph.get_each(conn, single_keys), v2)
        obs["writes_after_up"] = ph.set_many(conn, [(k, b"v3") for k in keys[:100]])
        obs["victim_after_writes"] = cl.node_contents(victim, keys[:100])
        obs["proxy_alive"] = cl.proxy.alive()
    except BaseException as e:  # noqa: BLE001
        obs["_error"] = e
    obs["_cluster"] = cl.describe()
    yield obs
    cl.stop()


def test_kill9_victim_held_a_share(killed):
    assert len(killed.need("on_victim")) > 400, "the killed node held too few keys for the test to mean much"
    print(f"victim held {len(killed['on_victim'])} keys, primary of {len(killed['primary_on_victim'])}; "
          f"down after {killed.get('seconds_to_down')}, up {killed.get('seconds_to_up')} s after the restart")


def test_kill9_single_gets_all_hit_at_once(killed):
    p = killed.need("single_while_down")
    assert not p, "single gets right after kill -9: " + short(p)


def test_kill9_multi_gets_all_hit_at_once(killed):
    p = killed.need("multi_while_down")
    assert not p, "multi-gets right after kill -9: " + short(p)
    assert killed.need("multi1000_while_down") == (b"END", N_KEYS)


def test_kill9_writes_keep_working(killed):
    r = killed.need("write_replies_while_down")
    assert r == [b"STORED"] * len(r), {x: r.count(x) for x in set(r)}
    p = killed.need("reads_after_writes_while_down")
    assert not p, "reads of values written while the node was down: " + short(p)


def test_kill9_stats_nodes_shows_down(killed):
    t = killed.need("seconds_to_down")
    assert not isinstance(t, Exception), str(t)
    st = killed.need("stats_while_down")
    assert st["proxy_nodes_live"] == "2", st


def test_kill9_restarted_node_up_within_seconds(killed):
    t = killed.need("seconds_to_up")
    assert not isinstance(t, Exception), f"{t}\n{killed.get('_cluster')}"
    assert t < 6, f"restarted node took {t:.1f} s to be up"


def test_kill9_after_restart_single_gets_no_miss(killed):
    assert killed.need("single_keys_on_victim") > 100
    p = killed.need("single_after_up")
    assert not p, "single gets after the node came back empty: " + short(p)


def test_kill9_after_restart_multi_gets_no_miss(killed):
    assert killed.need("multi_keys_on_victim") > 100
    p = killed.need("multi_after_up")
    assert not p, ("multi-gets after the node came back empty (keys whose primary is the "
                   "restarted node): " + short(p))


def test_kill9_writes_reach_restarted_node(killed):
    r = killed.need("writes_after_up")
    assert r == [b"STORED"] * 100
    on = killed.need("victim_after_writes")
    mine = set(killed.need("on_victim"))
    want = {k: b"v3" for k in killed.need("keys")[:100] if k in mine}
    assert on == want, f"restarted node holds {len(on)} of the {len(want)} rewritten keys it should"
    assert killed.need("proxy_alive")


# --------------------------------------------------------------------------
# partitions: SIGSTOP, and a real link cut between network namespaces
# --------------------------------------------------------------------------

def partition_scenario(cl: ph.Cluster, victim: int, cut, heal, obs: Observed, n_keys: int = 400):
    keys = [f"pt:{i}" for i in range(n_keys)]
    conn = cl.raw(timeout=15)
    assert set(ph.set_many(conn, [(k, b"old") for k in keys])) == {b"STORED"}
    affected = sorted(cl.node_contents(victim, keys))
    obs["affected"] = affected
    cut()
    t_cut = time.monotonic()
    # write "new1" (the victim may or may not get these) until the proxy marks it down
    replies, rounds = [], 0
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        rounds += 1
        replies += ph.set_many(conn, [(k, b"new1") for k in affected])
        if cl.node_states()[victim] == "down":
            break
    obs["seconds_to_down"] = time.monotonic() - t_cut
    obs["state_after_cut"] = cl.node_states()[victim]
    obs["replies_new1"] = replies
    # "new2": written while the victim is down, so it never sees them
    obs["replies_new2"] = ph.set_many(conn, [(k, b"new2") for k in affected])
    want = {k: b"new2" for k in affected}
    obs["reads_while_down"] = misses_and_errors(affected, ph.get_each(conn, affected), want)

    heal()
    t_heal = time.monotonic()
    # read continuously while it recovers: never an old value, never an error
    stale, errors, polls, up_at = [], [], 0, None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        polls += 1
        for k, (vals, end) in zip(affected, ph.get_each(conn, affected)):
            if end != b"END":
                errors.append(f"{k}: {end!r}")
            elif vals and vals[0][2] != b"new2":
                stale.append(f"{k}: {vals[0][2]!r} at {time.monotonic() - t_heal:.2f}s after heal")
        if up_at is None and cl.node_states()[victim] == "up":
            up_at = time.monotonic() - t_heal
            # keep reading a little after it serves again
            deadline = min(deadline, time.monotonic() + 1.0)
    obs["seconds_to_up_after_heal"] = up_at
    obs["stale_during_recovery"] = stale
    obs["errors_during_recovery"] = errors
    obs["polls"] = polls
    obs["single_after_up"] = misses_and_errors(affected, ph.get_each(conn, affected), want)
    # a fresh set of the same keys read by multi-get (values on the victim
    # were flushed; the single gets above refilled some of them)
    obs["multi_after_up_stale"] = [p for p in multi_problems(conn, affected, want)
                                   if "miss" not in p]
    on_victim = cl.node_contents(victim, affected)
    obs["victim_old_values"] = {k: v for k, v in on_victim.items() if v != b"new2"}


def _scenario_fixture(make_cluster, victim: int, cut, heal):
    obs = Observed()
    cl = None
    try:
        cl = make_cluster()
        partition_scenario(cl, victim, lambda: cut(cl, victim), lambda: heal(cl, victim), obs)
    except BaseException as e:  # noqa: BLE001
        obs["_error"] = e
    if cl is not None:
        obs["_cluster"] = cl.describe()
    return cl, obs


@pytest.fixture(scope="module")
def sigstopped(proxy_bin):
    cl, obs = _scenario_fixture(lambda: ph.Cluster(n=3, replicas=2), 1,
                                lambda cl, v: cl.sigstop(v), lambda cl, v: cl.sigcont(v))
    yield obs
    if cl is not None:
        cl.stop()


def _netns_scenario(near: bool, subnet: str):
    """Namespace A: the proxy and nodes 0, 1 (on A's own loopback); namespace
    B: node 2 on <subnet>.2; a veth pair A <subnet>.1/30 <-> B <subnet>.2/30.
    Both namespaces (and the pair) are created here and deleted at the end;
    nothing is added to the namespace the tests run in. The cut takes B's end
    down (near=False: A's queue may still deliver after the heal) or A's end
    (near=True: nothing sent during the cut ever arrives)."""
    ph.skip_unless_root()
    ok, why = ph.netns_available()
    if not ok:
        yield Observed(_error=RuntimeError(f"cannot create network namespaces here: {why}"))
        return
    pair = ph.NetnsPair(subnet=subnet)
    cl = None
    try:
        pair.create()

        def make():
            return ph.Cluster(n=3, replicas=2, netns=pair.a, node_netns=[pair.a, pair.a, pair.b],
                              node_hosts=[ph.HOST, ph.HOST, pair.b_addr])
        cut = (lambda cl, v: pair.cut_near()) if near else (lambda cl, v: pair.cut())
        heal = (lambda cl, v: pair.heal_near()) if near else (lambda cl, v: pair.heal())
        cl, obs = _scenario_fixture(make, 2, cut, heal)
        obs["netns"] = (pair.a, pair.b, "cut at A" if near else "cut at B")
        yield obs
    finally:
        if cl is not None:
            cl.stop()
        pair.delete()


@pytest.fixture(scope="module")
def netns_cut(proxy_bin):
    yield from _netns_scenario(near=False, subnet="10.233.7")


@pytest.fixture(scope="module")
def netns_cut_near(proxy_bin):
    yield from _netns_scenario(near=True, subnet="10.233.9")


SCENARIOS = ["sigstopped", "netns_cut", "netns_cut_near"]


@pytest.fixture(params=SCENARIOS)
def part(request):
    return request.getfixturevalue(request.param)


def test_partition_victim_held_keys(part):
    assert len(part.need("affected")) > 150
    print(f"affected keys {len(part['affected'])}, down after {part.get('seconds_to_down', 0):.2f} s, "
          f"new1 writes {len(part.get('replies_new1', []))}, up {part.get('seconds_to_up_after_heal')} s "
          f"after the heal, {part.get('polls')} read polls, netns {part.get('netns')}")


def test_partition_node_marked_down(part):
    assert part.need("state_after_cut") == "down", \
        f"not marked down {part.need('seconds_to_down'):.1f} s after the cut\n{part.get('_cluster')}"


def test_partition_writes_answered_stored(part):
    for name in ("replies_new1", "replies_new2"):
        r = part.need(name)
        assert r and set(r) == {b"STORED"}, f"{name}: {({x: r.count(x) for x in set(r)})}"
    p = part.need("reads_while_down")
    assert not p, "reads while the node is cut off: " + short(p)


def test_partition_healed_node_back_up(part):
    t = part.need("seconds_to_up_after_heal")
    assert t is not None and t < 10, f"node not up within 10 s of the heal (polled {part.need('polls')} times)"


def test_partition_no_stale_read_during_recovery(part):
    stale = part.need("stale_during_recovery")
    errors = part.need("errors_during_recovery")
    assert not stale, "stale values read through the proxy after the heal: " + short(stale)
    assert not errors, "errors during the recovery: " + short(errors)


def test_partition_new_values_after_recovery(part):
    p = part.need("single_after_up")
    assert not p, "single gets after the node is back: " + short(p)
    s = part.need("multi_after_up_stale")
    assert not s, "multi-gets after the node is back: " + short(s)


def test_partition_node_was_flushed(part):
    old = part.need("victim_old_values")
    back = part.need("seconds_to_up_after_heal") is not None
    assert not old, (f"the node {'returned' if back else 'never returned to service, and'} still holds values "
                     f"written before/while cut off: {list(old.items())[:8]}")


def test_two_of_three_down_answers_promptly(cluster):
    """Replicas 2 and two nodes killed: keys with a live replica still read;
    keys without one get a SERVER_ERROR line at once (no hang), a multi-get
    returns what is reachable under one END, and the connection stays usable."""
    cl = cluster
    keys = [f"two:{i}" for i in range(300)]
    conn = cl.raw(timeout=10)
    assert set(ph.set_many(conn, [(k, b"v") for k in keys])) == {b"STORED"}
    ring = ketama.Ring([(n.host, n.port, 1, None) for n in cl.nodes])
    reachable = {k for k in keys if 2 in ring.replica_set(k, 2)}
    cl.kill_node(0)
    cl.kill_node(1)
    t0 = time.monotonic()
    replies = ph.get_each(conn, keys, timeout=10)
    took = time.monotonic() - t0
    bad = [f"{k}: {vals!r} {end!r}" for k, (vals, end) in zip(keys, replies)
           if (k in reachable and (end != b"END" or not vals))
           or (k not in reachable and not end.startswith(b"SERVER_ERROR"))]
    assert not bad, f"{len(bad)} wrong answers with 2 of 3 nodes down: {bad[:8]}"
    assert took < 3, f"300 gets took {took:.1f} s with two nodes down"
    got = ph.multi_get(conn, keys, batch=300)
    assert set(got) == reachable
    assert conn.request(b"version\r\n").startswith(b"VERSION ")


def test_one_failed_write_leaves_no_stale_replica(proxy_bin):
    """A cut short enough that only one request to the node fails (fewer than
    failure_limit, so the node is never marked down, never flushed): a write
    answered STORED during the cut must still never be followed by a read of
    the value it replaced. Namespaces as in _netns_scenario, cut at A."""
    ph.require_netns()
    pair = ph.NetnsPair(subnet="10.233.10")
    cl = None
    try:
        pair.create()
        cl = ph.Cluster(n=3, replicas=2, netns=pair.a, node_netns=[pair.a, pair.a, pair.b],
                        node_hosts=[ph.HOST, ph.HOST, pair.b_addr])
        ring = ketama.Ring([(n.host, n.port, 1, None) for n in cl.nodes])
        key = next(k for k in (f"onefail:{i}" for i in range(1000)) if ring.owner(k) == 2)
        conn = cl.raw(timeout=10)
        assert conn.request(b"set %s 0 0 3\r\nOLD\r\n" % key.encode()) == b"STORED\r\n"
        pair.cut_near()
        t0 = time.monotonic()
        reply = conn.request(b"set %s 0 0 3\r\nNEW\r\n" % key.encode(), timeout=5)
        took = time.monotonic() - t0
        states = cl.node_states()
        pair.heal_near()
        time.sleep(0.3)
        assert reply == b"STORED\r\n", reply
        [(vals, end)] = ph.get_each(conn, [key])
        held = dict(cl.placement([key])[key])
        got = vals[0][2] if vals else None
        assert got == b"NEW", (
            f"`set {key} 0 0 3 NEW` answered {reply!r} after {took:.2f} s while the link to its primary "
            f"(node 2, {cl.node_addr(2)}) was cut; node states then {states}; after the heal `get {key}` "
            f"returns {got!r}; the replicas hold {held}")
    finally:
        if cl is not None:
            cl.stop()
        pair.delete()


def test_commands_on_keys_of_a_refilled_node_answer_like_memcached(cluster, server_factory, reference_bin):
    """A node killed, restarted empty and back `up` (refilled from the other
    replica on a read miss): writes to its keys before anyone read them get
    memcached's answer, not the empty node's (the other replica did apply
    them), and what a read returns afterwards is what memcached returns."""
    cl = cluster
    ref = server_factory(binary=reference_bin)
    conn, rconn = cl.raw(), harness.RawConn(ref.addr)
    try:
        keys = [f"rf:{i}" for i in range(600)]
        for c in (conn, rconn):
            assert set(ph.set_many(c, [(k, b"10") for k in keys])) == {b"STORED"}
        ring = ketama.Ring([(n.host, n.port, 1, None) for n in cl.nodes])
        mine = [k for k in keys if ring.owner(k) == 0]
        cl.kill_node(0)
        ph.get_each(conn, keys)                   # the proxy notices
        cl.wait_node_state(0, "down", timeout=5)
        cl.restart_node(0)
        cl.wait_node_state(0, "up", timeout=15)
        diffs = ph.compare_key_commands(conn, rconn, mine)
        assert not diffs, (f"{len(diffs)} of {len(ph.KEY_COMMANDS)} commands on keys of the restarted node "
                           "answer differently from memcached:\n" + "\n".join(diffs))
    finally:
        rconn.close()
