"""`stats`, `stats settings`, `stats reset` and memcstat (docs/protocol.md §9):
every must-have field is present with a sane value, and the counters move
exactly as memcached 1.6.18 moves them.
"""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest

import harness
from conftest import require_tool

MUST_HAVE = """pid uptime time version pointer_size rusage_user rusage_system
curr_connections total_connections max_connections curr_items total_items bytes
limit_maxbytes threads cmd_get cmd_set cmd_flush cmd_touch cmd_meta get_hits
get_misses get_expired get_flushed delete_hits delete_misses incr_hits
incr_misses decr_hits decr_misses cas_hits cas_misses cas_badval touch_hits
touch_misses store_too_large store_no_memory evictions reclaimed bytes_read
bytes_written accepting_conns conn_yields""".split()

COUNTERS = """cmd_get cmd_set cmd_flush cmd_touch get_hits get_misses get_expired
get_flushed delete_hits delete_misses incr_hits incr_misses decr_hits
decr_misses cas_hits cas_misses cas_badval touch_hits touch_misses
store_too_large store_no_memory evictions reclaimed""".split()

SETTINGS_MUST_HAVE = "maxbytes maxconns tcpport evictions cas_enabled item_size_max".split()

INT = re.compile(r"^\d+$")
FLOAT = re.compile(r"^\d+\.\d+$")


def ints(st: dict, names) -> dict:
    return {n: int(st[n]) for n in names}


def test_must_have_fields_present_and_sane(server_factory, text_client):
    srv = server_factory(["-m", "48", "-c", "300", "-t", "2"])
    c = text_client(srv)
    st = c.stats()
    missing = [f for f in MUST_HAVE if f not in st]
    assert not missing, f"missing stats fields: {missing}"
    for f in MUST_HAVE:
        if f == "version":
            assert st[f].strip(), "empty version"
        elif f.startswith("rusage_"):
            assert FLOAT.match(st[f]), f"{f}={st[f]!r} is not seconds.micros"
        else:
            assert INT.match(st[f]), f"{f}={st[f]!r} is not an unsigned integer"
    assert int(st["pid"]) == srv.pid
    assert 0 <= int(st["uptime"]) < 60
    assert abs(int(st["time"]) - time.time()) < 5
    assert int(st["pointer_size"]) in (32, 64)
    assert int(st["limit_maxbytes"]) == 48 * 1024 * 1024
    assert int(st["max_connections"]) == 300
    assert int(st["threads"]) == 2
    assert int(st["curr_connections"]) >= 1
    assert int(st["total_connections"]) >= int(st["curr_connections"])
    assert int(st["accepting_conns"]) == 1
    assert int(st["curr_items"]) == 0 and int(st["total_items"]) == 0 and int(st["bytes"]) == 0
    nonzero = {k: v for k, v in ints(st, COUNTERS).items() if v}
    assert not nonzero, f"fresh server has non-zero counters: {nonzero}"
    # The `stats` reply is STAT lines then END, nothing else.
    raw = c.block("stats")
    lines = raw.split(b"\r\n")
    assert lines[-1] == b"" and lines[-2] == b"END"
    assert all(ln.startswith(b"STAT ") and len(ln.split(b" ")) >= 3 for ln in lines[:-2])


def test_counters_move_like_memcached(server, text_client):
    c = text_client(server)

    def step(cmds, expect: dict):
        before = c.stats()
        for cmd in cmds:
            if isinstance(cmd, tuple):
                c.set(*cmd)
            elif cmd.split()[0] in ("get", "gets", "gat", "gats"):
                c.block(cmd)
            else:
                c.line(cmd)
        after = c.stats()
        got = {k: int(after[k]) - int(before[k]) for k in expect}
        assert got == expect, f"after {cmds!r}: deltas {got}, expected {expect}"

    step([("a", b"1"), ("b", b"22")],
         {"cmd_set": 2, "total_items": 2, "curr_items": 2, "cmd_get": 0})
    step(["get a b c", "get a a"],
         {"cmd_get": 5, "get_hits": 4, "get_misses": 1, "get_expired": 0})
    step(["gets b"], {"cmd_get": 1, "get_hits": 1})
    step(["delete a", "delete zz"],
         {"delete_hits": 1, "delete_misses": 1, "curr_items": -1, "total_items": 0})
    # (total_items is not checked here: memcached rewrites the number in
    # place, or stores a new item (+1) when another thread holds a reference
    # to it at that moment, e.g. its LRU maintainer)
    step(["incr b 1", "incr zz 1", "decr b 1", "decr zz 1"],
         {"incr_hits": 1, "incr_misses": 1, "decr_hits": 1, "decr_misses": 1,
          "curr_items": 0})
    step(["touch b 100", "touch zz 100", "gat 100 b zz"],
         {"cmd_touch": 4, "touch_hits": 2, "touch_misses": 2, "cmd_get": 0, "get_hits": 0})
    step(["cas b 0 0 1 999999\r\nx", "cas zz 0 0 1 1\r\nx"],
         {"cmd_set": 2, "cas_badval": 1, "cas_misses": 1, "cas_hits": 0})
    cas = int(c.block("gets b").split(b"\r\n")[0].split()[-1])
    step([f"cas b 0 0 1 {cas}\r\ny"], {"cas_hits": 1, "cmd_set": 1, "total_items": 1})
    # get_expired / get_flushed: memcached's background LRU maintainer may
    # reclaim an expired or flushed item before the get finds it (then the
    # get is a plain miss), so each round is pipelined in one packet and
    # most, not all, rounds must count.
    rounds = 5
    before = c.stats()
    for i in range(rounds):
        c.conn.send(b"set gone%d 0 -1 1\r\nx\r\nget gone%d\r\n" % (i, i))
        assert c.conn.read_until(b"END\r\n", quiet=5, timeout=5) == b"STORED\r\nEND\r\n"
    after = c.stats()
    assert int(after["get_misses"]) - int(before["get_misses"]) == rounds
    assert rounds - 2 <= int(after["get_expired"]) - int(before["get_expired"]) <= rounds
    before = c.stats()
    for i in range(rounds):
        c.conn.send(b"set fl%d 0 0 1\r\nx\r\nflush_all\r\nget fl%d\r\n" % (i, i))
        assert c.conn.read_until(b"END\r\n", quiet=5, timeout=5) == b"STORED\r\nOK\r\nEND\r\n"
    after = c.stats()
    assert int(after["cmd_flush"]) - int(before["cmd_flush"]) == rounds
    assert int(after["get_misses"]) - int(before["get_misses"]) == rounds
    assert rounds - 2 <= int(after["get_flushed"]) - int(before["get_flushed"]) <= rounds
    before = c.stats()
    c.conn.send(b"set big 0 0 2000000\r\n" + b"x" * 2_000_000 + b"\r\n")
    assert c.conn.read_line() == b"SERVER_ERROR object too large for cache\r\n"
    after = c.stats()
    assert int(after["store_too_large"]) - int(before["store_too_large"]) == 1
    assert int(after["bytes_read"]) - int(before["bytes_read"]) >= 2_000_000
    assert int(after["bytes_written"]) > int(before["bytes_written"])


def test_curr_items_and_bytes_track_contents(server, text_client):
    c = text_client(server)
    for i in range(50):
        assert c.set(f"item{i}", b"v" * 100) == b"STORED"
    st = c.stats()
    assert int(st["curr_items"]) == 50 and int(st["total_items"]) == 50
    assert 50 * 100 <= int(st["bytes"]) <= 50 * 1100
    for i in range(20):
        assert c.line(f"delete item{i}") == b"DELETED"
    st2 = c.stats()
    assert int(st2["curr_items"]) == 30
    assert int(st2["bytes"]) < int(st["bytes"])


def test_stats_reset_zeroes_counters_not_contents(server, text_client):
    c = text_client(server)
    for i in range(10):
        c.set(f"r{i}", b"abc")
    c.block("get r1 r2 nope")
    c.line("delete r9")
    c.line("incr nope 1")
    st = c.stats()
    assert int(st["cmd_get"]) == 3 and int(st["curr_items"]) == 9
    assert c.line("stats reset") == b"RESET"
    st2 = c.stats()
    nonzero = {k: v for k, v in ints(st2, COUNTERS).items() if v}
    assert not nonzero, f"counters not zeroed by stats reset: {nonzero}"
    assert int(st2["total_items"]) == 0
    assert int(st2["curr_items"]) == 9, "stats reset must not touch curr_items"
    assert int(st2["bytes"]) == int(st["bytes"]), "stats reset must not touch bytes"
    assert int(st2["curr_connections"]) == int(st["curr_connections"])
    assert c.get("r1") == b"abc"


def test_evictions_under_small_memory_limit(server_factory, text_client):
    srv = server_factory(["-m", "8"])
    c = text_client(srv, timeout=10)
    value = bytes(range(256)) * 200          # 51200 bytes
    n = 400                                  # ~20 MB through an 8 MB cache
    for i in range(n):
        assert c.set(f"ev{i}", value) == b"STORED", f"set ev{i}"
    st = c.stats()
    assert int(st["evictions"]) > 0, st
    assert int(st["curr_items"]) < n
    assert int(st["total_items"]) == n
    assert int(st["bytes"]) <= int(st["limit_maxbytes"]) == 8 * 1024 * 1024
    assert c.get(f"ev{n - 1}") == value, "the newest item must survive"
    assert c.get("ev0") is None, "the oldest item must have been evicted"
    assert srv.alive()


@pytest.mark.parametrize("flags,expect", [
    ([], {"maxbytes": "67108864", "maxconns": "1024", "evictions": "on",
          "cas_enabled": "yes", "item_size_max": "1048576",
          "stat_key_prefix": ":", "detail_enabled": "no"}),
    (["-m", "32", "-c", "200", "-M", "-C", "-I", "2m"],
     {"maxbytes": "33554432", "maxconns": "200", "evictions": "off",
      "cas_enabled": "no", "item_size_max": "2097152"}),
    (["-D", "/"], {"stat_key_prefix": "/", "detail_enabled": "yes"}),
], ids=["defaults", "m32-c200-M-C-I2m", "D"])
def test_stats_settings(server_factory, text_client, flags, expect):
    srv = server_factory(flags)
    st = text_client(srv).stats("settings")
    missing = [f for f in SETTINGS_MUST_HAVE if f not in st]
    assert not missing, f"missing stats settings fields: {missing}"
    assert st["tcpport"] == str(srv.port)
    got = {k: st[k] for k in expect}
    assert got == expect


def test_memcstat_prints_the_fields(server, text_client):
    tool = require_tool("memcstat")
    host, port, _ = server
    c = text_client(server)
    c.set("ms", b"1")
    c.block("get ms nope")
    p = subprocess.run([tool, f"--servers={host}:{port}"], capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert f"Server: {host} ({port})" in out, out
    fields = dict(re.findall(r"^\s+(\w+): (.*)$", out, re.M))
    missing = [f for f in MUST_HAVE if f not in fields]
    assert not missing, f"memcstat output lacks {missing}:\n{out}"
    assert int(fields["pid"]) == server.pid
    assert int(fields["curr_items"]) == 1
    assert int(fields["get_hits"]) == 1 and int(fields["get_misses"]) == 1
    assert os.path.basename(tool) == "memcstat"


def test_stats_settings_follow_stats_detail_and_verbosity(server, text_client):
    c = text_client(server)
    assert c.line("stats detail on") == b"OK"
    assert c.line("verbosity 4294967360") == b"OK"
    st = c.stats("settings")
    assert (st["detail_enabled"], st["verbosity"]) == ("yes", "2")
    assert c.line("stats detail off") == b"OK"
    assert c.line("verbosity 4294967296") == b"OK"
    st = c.stats("settings")
    assert (st["detail_enabled"], st["verbosity"]) == ("no", "0")


def stats_names(c) -> list[str]:
    raw = c.block("stats").decode("latin-1")
    return [line.split(" ")[1] for line in raw.split("\r\n") if line.startswith("STAT ")]


@pytest.mark.parametrize("flags", [[], ["-o", "idle_timeout=30"]], ids=["defaults", "idle_timeout"])
def test_field_names_and_order_match_memcached(server_factory, text_client, reference_bin, flags):
    """Every field memcached 1.6.18 prints, in its order, none added: tools
    that read `stats` positionally or expect memcached's set find it."""
    reference = stats_names(text_client(server_factory(flags, binary=reference_bin)))
    target = stats_names(text_client(server_factory(flags)))
    assert len(reference) >= 90
    assert ("idle_kicks" in reference) == bool(flags)
    assert target == reference


def test_hash_and_housekeeping_fields(server_factory, text_client):
    srv = server_factory([])
    c = text_client(srv)
    st = c.stats()
    power = int(st["hash_power_level"])
    assert power == 16, "default table: 2^16 buckets"
    # memcached: 8 bytes per bucket; the node: 4 (chains of 32-bit handles)
    assert int(st["hash_bytes"]) in (4 << power, 8 << power)
    assert st["hash_is_expanding"] == "0"
    # the descriptors the server holds for itself: listener, event bases, wake-ups
    assert 3 <= int(st["reserved_fds"]) <= 64
    assert st["lru_crawler_running"] == "0"
    starts = int(st["lru_crawler_starts"])
    assert c.line("lru_crawler crawl all") == b"OK"
    deadline = time.time() + 5
    while int(c.stats()["lru_crawler_starts"]) == starts and time.time() < deadline:
        time.sleep(0.05)
    assert int(c.stats()["lru_crawler_starts"]) >= starts + 1
    zero = """response_obj_oom read_buf_oom listen_disabled_num time_in_listen_disabled_us
    slab_reassign_rescues slab_reassign_running slabs_moved malloc_fails log_worker_dropped
    log_watcher_skipped log_watchers unexpected_napi_ids round_robin_fallback
    lrutail_reflocked direct_reclaims lru_bumps_dropped""".split()
    assert {f: st[f] for f in zero} == {f: "0" for f in zero}
    assert c.line("stats reset") == b"RESET"
    assert int(c.stats()["lru_crawler_starts"]) == 0


def test_idle_kicks_count_idle_timeout_closes(server_factory, text_client):
    srv = server_factory(["-o", "idle_timeout=1"])
    idle = harness.RawConn(srv.addr)
    try:
        idle.send(b"version\r\n")
        assert idle.read_until(b"\r\n").startswith(b"VERSION ")
        assert idle.wait_closed(timeout=5), "the idle connection was not closed"
    finally:
        idle.close()
    c = text_client(srv)
    assert c.stats()["idle_kicks"] == "1"
