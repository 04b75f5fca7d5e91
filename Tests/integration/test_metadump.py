"""lru_crawler metadump of a full node (docs/protocol.md §6).

The differential corpus (corpus/metadump.txt) holds each answer and line
against memcached 1.6.18; this file checks what listing every key of a node
must do at scale, as a rebalance that copies every key elsewhere would:

- 200,000 items: every key listed exactly once, and the server's memory
  stays flat (the dump is streamed, never built whole);
- a client that reads its dump slowly costs the other clients of the same
  worker nothing, even while they write and delete keys and dump too, and
  every key present all along is still listed exactly once;
- a client that goes away mid-dump leaves the server as it was;
- `-X` refuses the dump with memcached's answer.

Tests named `test_node_*` pin what the node does where memcached differs
(README, "Deliberate differences"): memcached runs one dump at a time,
answers another `BUSY` or blocks the worker thread that asks while the
first dump's reader is slow; the node runs each dump on its own connection.
Every loop is bounded in count and time; only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import urllib.parse

import harness

ITEMS = 200_000
_LINE = re.compile(rb"key=(\S+) exp=-?\d+ la=\d+ cas=\d+ fetch=(?:yes|no) cls=\d+ size=\d+")


def key(i: int) -> bytes:
    # `:` comes back URI-encoded (%3A): the keys are decoded, not compared raw.
    return b"meta:%06d" % i


def fill(addr, keys, value: bytes = b"v" * 10) -> None:
    """Stores every key with pipelined noreply sets, then waits for `mn`."""
    c = harness.RawConn(addr, timeout=30)
    batch = []
    for k in keys:
        batch.append(b"set %s 0 0 %d noreply\r\n%s\r\n" % (k, len(value), value))
        if len(batch) == 5000:
            c.send(b"".join(batch))
            batch = []
    c.send(b"".join(batch) + b"mn\r\n")
    assert c.read_until(b"MN\r\n", quiet=30, timeout=60) == b"MN\r\n"
    c.close()


def read_dump(sock: socket.socket, timeout: float = 60, chunk: int = 1 << 20, pause: float = 0.0,
              slow_for: float = 0.0, start: bytes = b"") -> list[bytes]:
    """Reads one dump to its END (`start`: what was read of it already) and
    returns the keys it lists, decoded, in order. For `slow_for` seconds it
    reads `chunk` bytes every `pause`."""
    buf = bytearray(start)
    deadline = time.monotonic() + timeout
    slow_until = time.monotonic() + slow_for
    sock.settimeout(5)
    while not buf.endswith(b"END\r\n"):
        assert time.monotonic() < deadline, f"dump not over after {timeout} s ({len(buf)} bytes)"
        slow = time.monotonic() < slow_until
        data = sock.recv(chunk if slow else 1 << 20)
        assert data, f"connection closed mid-dump after {len(buf)} bytes"
        buf += data
        if slow:
            time.sleep(pause)
    lines = bytes(buf[:-len(b"END\r\n")]).split(b"\n")
    assert lines[-1] == b"", lines[-1][:200]
    keys = []
    for line in lines[:-1]:
        m = _LINE.fullmatch(line)
        assert m, line[:200]
        keys.append(urllib.parse.unquote_to_bytes(m.group(1)))
    return keys


def start_dump(addr, classes: bytes = b"all", rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(addr)
    s.sendall(b"lru_crawler metadump " + classes + b"\r\n")
    return s


def peak_rss_kib(pid: int) -> int:
    return harness.proc_status_kib(pid, "VmHWM")


def test_dump_lists_every_key_once_in_flat_memory(server_factory):
    # `hash` walks memcached's hash table: its LRU walk (`all`) may miss or
    # repeat items its LRU maintainer moves meanwhile. The node walks its
    # table for both.
    srv = server_factory(["-m", "128"])
    keys = [key(i) for i in range(ITEMS)]
    fill(srv.addr, keys)
    base = peak_rss_kib(srv.proc.pid)
    s = start_dump(srv.addr, b"hash")
    listed = read_dump(s)
    s.close()
    growth = peak_rss_kib(srv.proc.pid) - base
    assert len(listed) == ITEMS
    assert set(listed) == set(keys)
    # The dump is ~15 MB of text; built whole it would be more than that again.
    assert growth < 8 * 1024, f"server grew by {growth} KiB for a {ITEMS}-line dump"
    with harness.TextClient(srv.addr) as c:
        assert c.line("version").startswith(b"VERSION")


def test_node_slow_reader_costs_its_worker_nothing(server_factory):
    """One worker thread (-t 1) serves a dump read slowly, a client writing,
    reading and deleting keys, and a second dump read at full speed."""
    srv = server_factory(["-m", "128", "-t", "1"])
    keys = [key(i) for i in range(ITEMS)]
    fill(srv.addr, keys)
    base = peak_rss_kib(srv.proc.pid)
    results: dict[str, object] = {}

    def slow_reader():
        try:
            s = start_dump(srv.addr, b"all", rcvbuf=32 * 1024)
            results["slow"] = read_dump(s, timeout=90, chunk=8192, pause=0.005, slow_for=3.0)
            s.close()
        except BaseException as e:  # reported below
            results["slow"] = e

    reader = threading.Thread(target=slow_reader)
    reader.start()
    time.sleep(0.3)
    # Meanwhile on the same worker: writes, reads and deletes, each answered
    # at once, and a second dump that does not wait for the first.
    c = harness.RawConn(srv.addr, timeout=5)
    latencies = []
    for i in range(300):
        t0 = time.monotonic()
        assert c.request(b"set fresh:%d 0 0 1\r\nx\r\n" % i) == b"STORED\r\n"
        assert c.request(b"get %s\r\n" % key(i), done=b"END\r\n") == b"VALUE %s 0 10\r\n%s\r\nEND\r\n" % (key(i), b"v" * 10)
        assert c.request(b"delete %s\r\n" % key(ITEMS - 1 - i)) == b"DELETED\r\n"
        latencies.append(time.monotonic() - t0)
    t0 = time.monotonic()
    fast = start_dump(srv.addr, b"hash")
    second = read_dump(fast, timeout=30)
    fast.close()
    second_took = time.monotonic() - t0
    reader.join(timeout=120)
    assert not reader.is_alive(), "slow dump did not end"
    first = results.get("slow")
    if isinstance(first, BaseException):
        raise first
    growth = peak_rss_kib(srv.proc.pid) - base

    assert max(latencies) < 0.25, f"slowest round trip {max(latencies):.3f} s during a slow dump"
    assert second_took < 20, f"second dump took {second_took:.1f} s"
    deleted = {key(ITEMS - 1 - i) for i in range(300)}
    added = {b"fresh:%d" % i for i in range(300)}
    for listed in (first, second):
        counts: dict[bytes, int] = {}
        for k in listed:
            counts[k] = counts.get(k, 0) + 1
        assert all(n == 1 for n in counts.values()), "a key listed twice"
        # Present all along: listed exactly once; written or deleted meanwhile: maybe.
        assert set(keys) - deleted <= counts.keys()
        assert counts.keys() <= set(keys) | added
    assert growth < 16 * 1024, f"server grew by {growth} KiB during two dumps"


def start_dump_when_free(addr, classes: bytes = b"hash", rcvbuf: int | None = None) -> tuple[socket.socket, bytes]:
    """memcached runs one dump at a time, and notices that a client went
    away within a second: it answers BUSY until then (the node never does)."""
    deadline = time.monotonic() + 10
    while True:
        s = start_dump(addr, classes, rcvbuf)
        s.settimeout(5)
        first = s.recv(4096)
        if not first.startswith(b"BUSY ") or time.monotonic() > deadline:
            return s, first
        s.close()
        time.sleep(0.1)


def test_dump_left_mid_way_leaves_the_server_as_it_was(server_factory):
    srv = server_factory(["-m", "128"])
    keys = [key(i) for i in range(50_000)]
    fill(srv.addr, keys)
    base = peak_rss_kib(srv.proc.pid)
    for _ in range(5):
        s, first = start_dump_when_free(srv.addr, rcvbuf=16 * 1024)
        assert first.startswith(b"key="), first[:100]
        s.close()
    s, first = start_dump_when_free(srv.addr)
    assert first.startswith(b"key="), first[:100]
    listed = read_dump(s, start=first)
    s.close()
    assert sorted(listed) == sorted(keys)
    assert peak_rss_kib(srv.proc.pid) - base < 8 * 1024
    with harness.TextClient(srv.addr) as c:
        assert c.line("version").startswith(b"VERSION")


def test_dump_refused_with_X(server_factory):
    srv = server_factory(["-X"])
    fill(srv.addr, [key(i) for i in range(10)])
    c = harness.RawConn(srv.addr, timeout=5)
    assert c.request(b"lru_crawler metadump all\r\n") == b"ERROR metadump not allowed\r\n"
    assert c.request(b"lru_crawler metadump hash\r\n") == b"ERROR metadump not allowed\r\n"
    assert c.request(b"stats cachedump 1 1\r\n") == b"CLIENT_ERROR stats cachedump not allowed\r\n"
    assert c.request(b"get %s\r\n" % key(3), done=b"END\r\n").startswith(b"VALUE %s " % key(3))
