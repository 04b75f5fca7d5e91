"""Hostile and unlucky clients must not hurt other clients or the tier.

Each test is a regression test for one way a client (or an operator) once
hurt the node or the proxy, named after what it protects:

- one client's values reaching another through a shared node connection
  (a line whose `noreply` sits next to a NUL byte);
- the proxy crashing when a multi-get outlives its client;
- one small request growing a node (and, through the proxy, every replica)
  by the size of a large value times the number of times it is named;
- a request line without end growing a server without bound;
- replies lost when a client half-closes, and a binary-protocol request
  left hanging.

Every load loop is bounded in count and time; only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import socket
import struct
import threading
import time

import harness
import proxy_harness as ph

MIB = 1 << 20


def big_value_line(n: int = MIB - 512) -> tuple[bytes, int]:
    value = bytes((i * 7) & 0xFF for i in range(256)) * (n // 256)
    return b"set big 0 0 %d\r\n" % len(value) + value + b"\r\n", len(value)


def read_exactly(conn: harness.RawConn, total: int, timeout: float) -> int:
    """Reads and discards `total` bytes (or until EOF/timeout); returns the count read."""
    got = 0
    deadline = time.monotonic() + timeout
    sock = conn.sock
    sock.setblocking(True)
    sock.settimeout(1.0)
    try:
        if conn.buf:
            got += len(conn.buf)
            conn.buf.clear()
        while got < total and time.monotonic() < deadline:
            try:
                chunk = sock.recv(min(1 << 20, total - got))
            except socket.timeout:
                continue
            if not chunk:
                break
            got += len(chunk)
    finally:
        sock.setblocking(False)
    return got


def peak_rss_kib(pid: int) -> int:
    return harness.proc_status_kib(pid, "VmHWM")


def reset_close(sock: socket.socket) -> None:
    """Closes with a TCP reset: what a client killed mid-request does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# --------------------------------------------------------------------------
# One client's data never reaches another
# --------------------------------------------------------------------------

def test_nul_noreply_line_does_not_shift_replies_between_clients(cluster):
    """A storage line with `noreply` next to a NUL byte once made the proxy
    forward `noreply` while expecting a reply, so every later reply on the
    shared node connection went to the wrong request: clients read each
    other's values. Victims read their own keys while an attacker sends such
    lines; every reply must be the victim's own."""
    victims = 6
    stop = threading.Event()
    problems: list[str] = []

    def victim(n: int):
        c = cluster.raw(timeout=10)
        i = 0
        deadline = time.monotonic() + 4
        while not stop.is_set() and time.monotonic() < deadline and i < 3000:
            key = f"victim{n}-{i % 50}"
            value = f"secret-{n}-{i}".encode()
            reply = c.request(b"set %s 0 0 %d\r\n%s\r\nget %s\r\n" % (key.encode(), len(value), value, key.encode()),
                              done=b"END\r\n", timeout=5)
            want = b"STORED\r\nVALUE %s 0 %d\r\n%s\r\nEND\r\n" % (key.encode(), len(value), value)
            if reply != want:
                problems.append(f"victim {n} got {reply[:120]!r}, wanted {want!r}")
                return
            i += 1

    threads = [threading.Thread(target=victim, args=(n,)) for n in range(victims)]
    for t in threads:
        t.start()
    attacker = cluster.raw(timeout=10)
    for i in range(200):
        reply = attacker.request(b"set foo 0 0 3 noreply \x00\r\nbar\r\nset x 0 0 1\r\n1\r\n", timeout=5)
        if reply != b"STORED\r\n":
            problems.append(f"attacker's set x answered {reply[:120]!r}")
            break
        reply = attacker.request(b"set foo 0 0 3 \x00noreply\r\nbar\r\n", timeout=5)
        if reply != b"STORED\r\n":
            problems.append(f"attacker's set foo (NUL before noreply) answered {reply[:120]!r}")
            break
    stop.set()
    for t in threads:
        t.join(30)
    assert not problems, problems[:5]
    assert cluster.proxy.alive()


# --------------------------------------------------------------------------
# Work that outlives a client
# --------------------------------------------------------------------------

def test_multiget_reset_during_refill_does_not_crash_the_proxy(cluster):
    """After a node comes back (flushed, its keys refilled from replicas on
    first read), multi-gets of its keys whose client resets before the
    reply: the refill finishes after the session is gone, and once crashed
    the proxy reading a reference to it."""
    keys = [f"refill{i}" for i in range(300)]
    c = cluster.raw(timeout=10)
    ph.set_many(c, [(k, b"v" + k.encode()) for k in keys])
    cluster.kill_node(0)
    c2 = cluster.client()
    # Reads of node 0's keys fail over and mark it down.
    ph.wait_until(lambda: (c2.conn.request(b"get " + " ".join(keys[:50]).encode() + b"\r\n", done=b"END\r\n"),
                           cluster.node_states()[0] != "up")[1], 10, what="node 0 marked down")
    cluster.restart_node(0)
    cluster.wait_node_state(0, "up", timeout=15)
    line = b"get " + " ".join(keys).encode() + b"\r\n"
    for _ in range(40):
        s = socket.create_connection(cluster.addr, timeout=5)
        s.sendall(line)
        reset_close(s)
    # The refills started above finish after their sessions are gone.
    time.sleep(0.5)
    assert cluster.proxy.alive(), cluster.describe()
    got = ph.multi_get(cluster.raw(timeout=10), keys)
    assert len(got) == len(keys)


# --------------------------------------------------------------------------
# One small request must not grow a server by a value times its count
# --------------------------------------------------------------------------

def _big_multiget(addr, pid: int, names: int, read: bool) -> tuple[int, int]:
    """Sets a ~1 MiB value, then asks for it `names` times in one get.
    Returns (bytes of reply read, peak RSS growth in KiB)."""
    setter = harness.RawConn(addr, timeout=10)
    line, size = big_value_line()
    assert setter.request(line) == b"STORED\r\n"
    setter.close()
    base = peak_rss_kib(pid)
    c = harness.RawConn(addr, timeout=10)
    c.send(b"get " + b" ".join([b"big"] * names) + b"\r\n")
    each = len(b"VALUE big 0 %d\r\n" % size) + size + 2
    total = each * names + len(b"END\r\n")
    got = 0
    if read:
        got = read_exactly(c, total, timeout=60)
    else:
        time.sleep(1.5)
    c.close()
    return (got if read else total), peak_rss_kib(pid) - base


def test_node_streams_a_multiget_of_one_large_value(server):
    """805 bytes of request once took a node to 216 MB (and 100,000 keys
    aborted it): each key copied the value into the output. The reply now
    comes out as the socket drains; memory stays flat."""
    host, port, proc = server
    total, growth = _big_multiget((host, port), proc.pid, names=400, read=True)
    each = total // 400
    assert total > 400 * MIB * 0.9
    assert growth < 48 * 1024, f"node grew by {growth} KiB for a {total}-byte reply"
    # A client that never reads costs no more.
    _, growth = _big_multiget((host, port), proc.pid, names=3000, read=False)
    assert growth < 48 * 1024, f"node grew by {growth} KiB while its client did not read"
    with harness.TextClient((host, port)) as c:
        assert c.line("version").startswith(b"VERSION")
    assert each > 0


def test_node_writes_the_end_of_a_streamed_multiget_unasked(server):
    """A get streamed as the socket drains ends with less than the output
    limit (here 600 KB and END): that last part, and the replies after it,
    come out without the client sending anything more."""
    host, port, _ = server
    c = harness.RawConn((host, port), timeout=10)
    value = b"v" * 600_000
    assert c.request(b"set mid 0 0 %d\r\n%s\r\n" % (len(value), value)) == b"STORED\r\n"
    c.send(b"get mid mid mid mid mid\r\nversion\r\n")
    ended = re.compile(rb"\r\nEND\r\nVERSION [^\r\n]*\r\n\Z")
    reply = c.read_until(lambda b: ended.search(b) is not None, quiet=5, timeout=20)
    assert ended.search(reply), f"{len(reply)} bytes, ending {reply[-40:]!r}"
    assert reply.count(b"VALUE mid 0 600000\r\n") == 5


def test_proxy_asks_for_a_repeated_key_once_and_streams_the_reply(cluster):
    """Through the proxy the same request once killed the primary, then the
    replica it was retried on. The proxy asks each node for a key once, and
    writes the repeated values as the client reads."""
    names = 400
    total, growth = _big_multiget(cluster.addr, cluster.proxy.pid, names=names, read=True)
    assert total > names * MIB * 0.9
    assert growth < 64 * 1024, f"proxy grew by {growth} KiB for a {total}-byte reply"
    _, growth = _big_multiget(cluster.addr, cluster.proxy.pid, names=3000, read=False)
    assert growth < 64 * 1024, f"proxy grew by {growth} KiB while its client did not read"
    for i, node in enumerate(cluster.nodes):
        assert node.alive(), f"node {i} died"
        assert peak_rss_kib(node.pid) < 200 * 1024, f"node {i} peak RSS {peak_rss_kib(node.pid)} KiB"
    assert cluster.node_states() == ["up"] * len(cluster.nodes)


def test_proxy_survives_quit_after_a_write_without_reply(cluster):
    """A write whose reply the client does not want (noreply, meta q), then
    `quit`: the closing request reused the write's request object, whose
    node calls were still out; the session was freed with it unaccounted,
    and the node's late reply used the freed session (SIGSEGV in
    ProxiedRequest.nodeAnswered). Found by test_fuzz.py."""
    payloads = [b"set a 0 0 1 noreply\r\nx\r\nquit\r\n", b"delete a noreply\r\nquit\r\n",
                b"ms a 1 q\r\nx\r\nquit\r\n", b"touch a 0 noreply\r\nquit\r\n"]
    for payload in payloads:
        for _ in range(5):
            c = cluster.raw(timeout=5)
            c.send(payload)
            assert c.wait_closed(3), f"{payload!r}: the proxy did not close after quit"
            c.close()
        time.sleep(0.3)
        assert cluster.proxy.alive(), f"the proxy died after {payload!r}:\n{cluster.proxy.log(3000)}"
    assert cluster.client().set("after-quit", b"ok") == b"STORED"


def test_proxy_reads_a_multiget_before_a_later_too_large_store(cluster):
    """`get a b` then a store of `a` too large for the cache, pipelined: the
    get must see `a` (memcached, the node). The too-large store's removal of
    `a` went out at once on the single-key lane while the multi-get waited
    on the bulk lane, and overtook it. Found by test_fuzz.py."""
    c = cluster.raw(timeout=10)
    wrong = []
    for i in range(30):
        c.send(b"set a%d 0 0 1\r\nx\r\nget a%d b\r\nset a%d 0 0 2000000\r\n" % (i, i, i)
               + b"y" * 2000000 + b"\r\nmn\r\n")
        got = c.read_until(b"MN\r\n", quiet=5, timeout=10)
        want = b"STORED\r\nVALUE a%d 0 1\r\nx\r\nEND\r\nSERVER_ERROR object too large for cache\r\nMN\r\n" % i
        if got != want:
            wrong.append(got)
    assert not wrong, f"{len(wrong)} of 30 multi-gets missed the key stored before them, e.g. {wrong[0]!r}"


def test_proxy_caps_what_one_client_may_have_waiting(cluster_factory):
    """A multi-get whose distinct values exceed client_reply_max is answered
    with memcached's out-of-memory error; the connection stays usable."""
    cluster = cluster_factory(n=3, replicas=2, options={"client_reply_max": "4m"})
    c = cluster.raw(timeout=20)
    value = b"x" * (512 * 1024)
    ph.set_many(c, [(f"wide{i}", value) for i in range(12)])
    reply = c.request(b"get " + b" ".join(b"wide%d" % i for i in range(12)) + b"\r\n",
                      done=b"\r\n", timeout=10)
    assert reply == b"SERVER_ERROR out of memory writing get response\r\n"
    reply = c.request(b"get wide0 wide1\r\n", done=b"END\r\n", timeout=10)
    assert reply.count(b"VALUE ") == 2 and reply.endswith(b"END\r\n")


# --------------------------------------------------------------------------
# Request lines have an end
# --------------------------------------------------------------------------

def _unbounded_line(addr, pid: int) -> tuple[bytes, bool, int]:
    base = peak_rss_kib(pid)
    c = harness.RawConn(addr, timeout=10)
    c.send(b"get " + b"k" * (3 * MIB))
    reply = c.read_until(b"\r\n", quiet=5, timeout=10)
    closed = c.wait_closed(5)
    return reply, closed, peak_rss_kib(pid) - base


def test_node_refuses_an_endless_request_line(server):
    host, port, proc = server
    reply, closed, growth = _unbounded_line((host, port), proc.pid)
    assert reply == b"CLIENT_ERROR line too long\r\n"
    assert closed
    assert growth < 32 * 1024
    with harness.TextClient((host, port)) as c:
        assert c.line("version").startswith(b"VERSION")


def test_node_request_line_limit_is_an_option(server_factory):
    srv = server_factory(["-o", "request_line_max=64k"])
    c = harness.RawConn(srv.addr, timeout=10)
    keys = b" ".join(b"k%05d" % i for i in range(12000))   # ~84 KB
    c.send(b"get " + keys + b"\r\n")
    assert c.read_until(b"\r\n", quiet=5) == b"CLIENT_ERROR line too long\r\n"
    assert c.wait_closed(5)
    c = harness.RawConn(srv.addr, timeout=10)
    keys = b" ".join(b"k%05d" % i for i in range(8000))    # ~56 KB
    assert c.request(b"get " + keys + b"\r\n", done=b"END\r\n") == b"END\r\n"


def test_proxy_refuses_an_endless_request_line(cluster):
    reply, closed, growth = _unbounded_line(cluster.addr, cluster.proxy.pid)
    assert reply == b"CLIENT_ERROR line too long\r\n"
    assert closed
    assert growth < 32 * 1024
    assert cluster.client().line("version").startswith(b"VERSION")


# --------------------------------------------------------------------------
# Half-closed clients and the binary protocol
# --------------------------------------------------------------------------

def _half_closed_exchange(addr, payload: bytes, timeout: float = 10) -> bytes:
    s = socket.create_connection(addr, timeout=timeout)
    try:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        out = bytearray()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                return bytes(out)
            out += chunk
        raise AssertionError(f"no close after {timeout} s; got {bytes(out)[-200:]!r}")
    finally:
        s.close()


def _half_close_payload() -> tuple[bytes, bytes]:
    sets = b"".join(b"set hc%d 0 0 2\r\nv%d\r\n" % (i, i % 10) for i in range(100))
    gets = b"".join(b"get hc%d\r\n" % i for i in range(100))
    want = b"STORED\r\n" * 100 + b"".join(b"VALUE hc%d 0 2\r\nv%d\r\nEND\r\n" % (i, i % 10) for i in range(100))
    return sets + gets, want


def test_node_answers_everything_before_a_half_close(server):
    payload, want = _half_close_payload()
    assert _half_closed_exchange(server.addr, payload) == want


def test_proxy_answers_everything_before_a_half_close(cluster):
    """`printf 'get k\\r\\n' | nc -N`: the proxy once closed with nothing."""
    payload, want = _half_close_payload()
    assert _half_closed_exchange(cluster.addr, payload) == want
    assert _half_closed_exchange(cluster.addr, b"get hc1\r\n") == b"VALUE hc1 0 2\r\nv1\r\nEND\r\n"
    assert _half_closed_exchange(cluster.addr, b"set hc2 0 0 1\r\nz\r\n") == b"STORED\r\n"


def test_proxy_closes_a_binary_protocol_connection(cluster):
    """A binary-protocol request (first byte 0x80) once got no reply and no
    close: the client waited for its timeout."""
    c = cluster.raw(timeout=5)
    c.send(bytes([0x80, 0x0A, 0, 0, 0, 0, 0, 0]) + bytes(16))   # a binary noop
    t0 = time.monotonic()
    assert c.wait_closed(3)
    assert time.monotonic() - t0 < 2
    assert cluster.client().line("version").startswith(b"VERSION")


# --------------------------------------------------------------------------
# A slow or greedy client costs only itself
# --------------------------------------------------------------------------

def test_greedy_client_does_not_stall_others_or_get_a_node_flushed(cluster):
    """One 8 MB multi-get, repeated by a client that never reads its replies,
    once stalled another client's write on the shared node connection for
    2.4 s: the write timed out, the node was marked down and flushed. Others
    must not notice it."""
    c = cluster.raw(timeout=20)
    value = b"g" * (MIB - 1024)
    ph.set_many(c, [(f"greedy{i}", value) for i in range(8)])
    ph.set_many(c, [(f"mine{i}", b"v%d" % i) for i in range(200)])
    items_before = [int(cluster.node_client(i).stats()["curr_items"]) for i in range(len(cluster.nodes))]
    greedy = [cluster.raw(timeout=20) for _ in range(3)]
    line = b"get " + b" ".join(b"greedy%d" % i for i in range(8)) + b"\r\n"
    for g in greedy:
        for _ in range(30):
            g._sendall(line)   # and never read
    worst = 0.0
    other = cluster.raw(timeout=10)
    deadline = time.monotonic() + 4
    n = 0
    while time.monotonic() < deadline and n < 2000:
        t0 = time.monotonic()
        reply = other.request(b"set mine%d 0 0 2\r\nw%d\r\n" % (n % 200, n % 10), timeout=5)
        worst = max(worst, time.monotonic() - t0)
        assert reply == b"STORED\r\n", f"write {n} answered {reply!r}"
        n += 1
    assert worst < 0.4, f"a write waited {worst:.3f} s behind another client's replies"
    assert cluster.node_states() == ["up"] * len(cluster.nodes)
    stats = cluster.stats("nodes")
    assert all(stats.get(f"node:{i}:marked_down", "0") == "0" for i in range(len(cluster.nodes))), stats
    items_after = [int(cluster.node_client(i).stats()["curr_items"]) for i in range(len(cluster.nodes))]
    assert items_after == items_before, "a node lost items (flushed?)"
    for g in greedy:
        g.close()


# --------------------------------------------------------------------------
# A node that lost its data is noticed, however fast it came back
# --------------------------------------------------------------------------

def test_node_restarted_at_once_is_refilled_from_replicas(cluster):
    """kill -9 and restart on the same port while the proxy is idle: the node
    was never marked down, and 39% of its keys read as misses for good. A
    lost connection, or another pid and start time in its stats, means it
    may have lost its data: its keys are refilled from their replicas."""
    keys = [f"restart{i}" for i in range(3000)]
    c = cluster.raw(timeout=20)
    ph.set_many(c, [(k, b"value-" + k.encode()) for k in keys])
    assert len(ph.multi_get(c, keys)) == len(keys)
    cluster.kill_node(0)
    cluster.restart_node(0)
    time.sleep(0.5)
    replies = ph.get_each(c, keys)   # one key per request: the single-key path
    misses = [k for k, (values, end) in zip(keys, replies)
              if end != b"END" or [v for _k, _f, v, _c in values] != [b"value-" + k.encode()]]
    assert not misses, f"{len(misses)} of {len(keys)} keys missed after node 0 restarted, e.g. {misses[:5]}"
    assert cluster.node_states() == ["up"] * 3
    restarts = cluster.stats("nodes")["node:0:restarts"]
    assert restarts == "1", f"node 0 restarts {restarts}"


def test_node_restarted_while_idle_is_noticed_without_a_lost_connection(cluster_factory):
    """The proxy had no connection to the node (nothing was sent to it yet):
    the periodic stats poll still tells that another process answers."""
    cluster = cluster_factory(n=3, replicas=2)
    keys = [f"quiet{i}" for i in range(600)]
    ph.wait_until(lambda: cluster.stats("nodes").get("node:0:restarts") == "0", 5, what="first poll")
    # Written directly to every node (not through the proxy): the proxy's
    # workers hold no connection to node 0 when it restarts.
    for i in range(3):
        n = cluster.node_client(i)
        ph.set_many(n.conn, [(k, b"v") for k in keys])
    time.sleep(5.5)   # a stats poll sees node 0 as it is before the restart
    cluster.kill_node(0)
    cluster.restart_node(0)
    ph.wait_until(lambda: cluster.stats("nodes").get("node:0:restarts") == "1", 8,
                  what="the poll noticing node 0's restart")
    got = ph.multi_get(cluster.raw(timeout=20), keys)
    assert len(got) == len(keys)


# --------------------------------------------------------------------------
# A copy the proxy makes never brings back what a client deleted
# --------------------------------------------------------------------------

def test_refill_never_resurrects_a_deleted_key(cluster):
    """Right after a node restarts, a get on one proxy worker races a delete
    of the same key on another: the get's refill (read at a replica, add at
    the restarted node) once landed after the delete, and 104 to 321 of 600
    keys answered DELETED were readable again."""
    rounds = 6
    resurrected = []
    for r in range(rounds):
        keys = [f"race{r}-{i}" for i in range(1500)]
        c = cluster.raw(timeout=20)
        ph.set_many(c, [(k, b"old") for k in keys])
        cluster.kill_node(r % 3)
        cluster.restart_node(r % 3)
        ph.wait_until(lambda: cluster.stats("nodes").get(f"node:{r % 3}:restarts") == str(1 + r // 3), 8,
                      what="the restart noticed")
        # Two connections opened back to back land on different workers.
        reader, deleter = cluster.raw(timeout=20), cluster.raw(timeout=20)
        replies: dict = {}

        def read():
            replies["get"] = ph.get_each(reader, keys, batch=100)

        def delete():
            replies["delete"] = []
            for s in range(0, len(keys), 100):
                deleter.send(b"".join(b"delete %s\r\n" % k.encode() for k in keys[s:s + 100]))
                replies["delete"] += ph.read_lines(deleter, len(keys[s:s + 100]), 20)

        threads = [threading.Thread(target=read), threading.Thread(target=delete)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        deleted = [k for k, line in zip(keys, replies["delete"]) if line == b"DELETED"]
        assert len(deleted) > 1000, f"only {len(deleted)} deletes answered DELETED: {replies['delete'][:5]}"
        after = ph.multi_get(cluster.raw(timeout=20), deleted)
        resurrected += list(after)
        on_nodes = cluster.placement(deleted)
        resurrected += [k for k, holders in on_nodes.items() if holders]
    assert not resurrected, f"{len(resurrected)} deleted keys readable again, e.g. {sorted(set(resurrected))[:5]}"


# --------------------------------------------------------------------------
# Out of file descriptors: wait, do not spin
# --------------------------------------------------------------------------

def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _exhaust_descriptors(addr, pid: int, limit: int, extra: int):
    """Lowers `pid`'s open-file limit to `limit` and opens `extra` connections
    (more than fit). Returns (CPU seconds used over 1.5 s, the connections)."""
    import resource
    _soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, hard))
    conns = []
    for _ in range(extra):
        s = socket.socket()
        s.settimeout(2)
        s.connect(addr)   # completes in the kernel's backlog even when not accepted
        conns.append(s)
    time.sleep(0.3)
    before = _cpu_seconds(pid)
    time.sleep(1.5)
    return _cpu_seconds(pid) - before, conns


def test_node_out_of_descriptors_waits_instead_of_spinning(server_factory):
    # Not switched to another user: lowering the limit of another user's
    # process needs a capability a container may not grant.
    port = harness.free_port()
    node = ph.spawn([harness.target_binary(), "-l", harness.HOST, "-p", str(port), "-U", "0"], harness.HOST, port)
    host, proc = harness.HOST, node.proc
    try:
        _node_out_of_descriptors(host, port, proc)
    finally:
        node.stop()


def _node_out_of_descriptors(host, port, proc):
    watcher = harness.TextClient((host, port))
    used, conns = _exhaust_descriptors((host, port), proc.pid, limit=48, extra=80)
    try:
        assert used < 0.5, f"node used {used:.2f} s of CPU in 1.5 s while out of descriptors"
        stats = watcher.stats()
        assert int(stats["listen_disabled_num"]) > 0
        assert int(stats["time_in_listen_disabled_us"]) > 0
    finally:
        for s in conns:
            s.close()
    import resource
    _soft, hard = resource.prlimit(proc.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (4096, hard))
    # Accepting resumes once descriptors are free again.
    ph.wait_until(lambda: harness.TextClient((host, port), timeout=2).line("version").startswith(b"VERSION"), 5,
                  what="a new connection answered")


def test_proxy_out_of_descriptors_waits_instead_of_spinning(cluster):
    pid = cluster.proxy.pid
    assert cluster.client().line("version").startswith(b"VERSION")   # backend connections already open
    used, conns = _exhaust_descriptors(cluster.addr, pid, limit=64, extra=100)
    try:
        assert used < 0.5, f"proxy used {used:.2f} s of CPU in 1.5 s while out of descriptors"
    finally:
        for s in conns:
            s.close()
    import resource
    _soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (min(65536, hard), hard))
    ph.wait_until(lambda: cluster.client().line("version").startswith(b"VERSION"), 5, what="a new connection answered")


def test_node_refuses_a_connection_limit_it_cannot_have(server_factory):
    """-c beyond what the system allows: a clear message, not EMFILE later."""
    port = harness.free_port()
    out = subprocess.run([harness.target_binary(), "-l", "127.0.0.1", "-p", str(port), "-U", "0",
                          *harness._user_flags(), "-c", "3000000"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode != 0
    assert "open files" in (out.stderr + out.stdout), out.stderr


# --------------------------------------------------------------------------
# Shutdown answers what was sent before it
# --------------------------------------------------------------------------

def _pipelined_big_gets_then_sigterm(addr, pid: int, count: int) -> tuple[int, bytes, bool]:
    """Stores a ~1 MiB value, asks for it `count` times in one pipeline without
    reading, sends SIGTERM, then reads everything. Returns (complete replies,
    what followed them, whether the end was a reset)."""
    c = harness.RawConn(addr, timeout=10)
    line, size = big_value_line()
    assert c.request(line) == b"STORED\r\n"
    c.send(b"get big\r\n" * count)
    time.sleep(0.3)
    os.kill(pid, signal.SIGTERM)
    one = len(b"VALUE big 0 %d\r\n" % size) + size + len(b"\r\nEND\r\n")
    got = read_exactly(c, one * count + 1, timeout=30)
    reset = False
    try:
        c.sock.setblocking(True)
        c.sock.settimeout(2)
        tail = c.sock.recv(1)
    except ConnectionResetError:
        reset, tail = True, b""
    except socket.timeout:
        tail = b"<no end>"
    return got // one, tail if got % one == 0 else b"<partial reply>", reset


def test_node_sigterm_answers_what_was_sent_then_exits(server_factory):
    port = harness.free_port()
    node = ph.spawn([harness.target_binary(), "-l", harness.HOST, "-p", str(port), "-U", "0",
                     *harness._user_flags()], harness.HOST, port)
    try:
        t0 = time.monotonic()
        replies, tail, reset = _pipelined_big_gets_then_sigterm(node.addr, node.pid, 60)
        assert (replies, tail, reset) == (60, b"", False)
        assert node.proc.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 8
    finally:
        node.stop()


def test_proxy_sigterm_answers_what_was_sent_then_exits(cluster):
    pid = cluster.proxy.pid
    idle = cluster.raw()
    assert idle.request(b"version\r\n").startswith(b"VERSION")
    t0 = time.monotonic()
    replies, tail, reset = _pipelined_big_gets_then_sigterm(cluster.addr, pid, 60)
    assert (replies, tail, reset) == (60, b"", False)
    # An idle client is closed cleanly too, and the proxy exits before its grace is over.
    assert idle.wait_closed(5) and not idle.reset
    assert cluster.proxy.proc.wait(timeout=10) == 0
    assert time.monotonic() - t0 < 8
    # The log says it began and that it ended, with nothing cut short.
    log = cluster.proxy_log()
    assert "shutting down: answering what clients sent" in log, log[-2000:]
    [stopped] = [line for line in log.splitlines() if "proxy stopped" in line]
    assert "connections_cut=0" in stopped, stopped


# --------------------------------------------------------------------------
# A read that sets the expiry sets it on every copy
# --------------------------------------------------------------------------

def _ttls(cluster, key: str) -> list[int]:
    """The remaining TTL of `key` on each node that holds it."""
    out = []
    for i in range(len(cluster.nodes)):
        reply = cluster.node_client(i).conn.request(b"mg %s t\r\n" % key.encode())
        if reply.startswith(b"HD"):
            out.append(int(reply.split(b" t", 1)[1].split()[0]))
    return out


def test_gat_and_mg_with_T_set_the_expiry_of_every_replica(cluster):
    """gat through the proxy once touched only the replica that answered: the
    other copy kept its old expiry and could outlive or die before it."""
    c = cluster.raw()
    keys = [f"touchme{i}" for i in range(20)]
    ph.set_many(c, [(k, b"v") for k in keys])
    before = cluster.stats()
    assert c.request(b"gat 1000 touchme0\r\n", done=b"END\r\n") == b"VALUE touchme0 0 1\r\nv\r\nEND\r\n"
    assert c.request(b"gats 2000 " + " ".join(keys[1:10]).encode() + b"\r\n", done=b"END\r\n").count(b"VALUE") == 9
    assert c.request(b"mg touchme10 T3000 v\r\n") == b"VA 1\r\nv\r\n"
    time.sleep(0.3)   # the other replicas are touched after the reply
    want = {"touchme0": 1000, "touchme10": 3000, **{k: 2000 for k in keys[1:10]}}
    for key, ttl in want.items():
        ttls = _ttls(cluster, key)
        assert len(ttls) == 2 and all(ttl - 5 <= t <= ttl for t in ttls), f"{key}: TTLs {ttls}, wanted {ttl}"
    for key in keys[11:]:
        assert _ttls(cluster, key) == [-1, -1]
    after = cluster.stats()
    assert int(after["touch_hits"]) - int(before["touch_hits"]) == 10
    assert int(after["get_hits"]) - int(before["get_hits"]) == 1   # the mg
