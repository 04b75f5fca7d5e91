"""TLS on the node (`-Z`), as memcached 1.6.18 serves it, with a test CA
made by scripts/make-test-ca:

- clients that speak TLS unchanged: pymemcache with `tls_context`, Python's
  ssl module with a 512 KB value, `openssl s_client` scripted;
- `-l notls:<addr>` beside a TLS listener; `stats settings`' ssl_* lines
  and `stats`' TLS counters equal to memcached's with the same flags;
- `ssl_verify_mode 2`: a client without a certificate, or with one from an
  unrelated CA, refused; with the test CA's, served;
- refused, each with a log line and no crash: plain text to the TLS port
  (200 times: the node stays up and its connections come back), TLS to the
  `notls:` port, an expired server certificate and a wrong CA (refused by
  the client); a client that stalls mid-handshake does not hold up others,
  nor does half a record cost CPU while the rest is awaited;
- `refresh_certs` serves the files' new certificate to new connections.

With `--target memcached` the same tests run against memcached `-Z` (what
only the node counts or logs is checked for the node alone).
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time

import pytest

import harness
from tls_relay import client_context

MAKE_CA = os.path.join(harness.REPO_ROOT, "scripts", "make-test-ca")


@pytest.fixture(scope="module")
def certs():
    """The test CA's files, in a directory the node (run as nobody) can read."""
    d = tempfile.mkdtemp(prefix="mctls-")
    os.chmod(d, 0o755)
    subprocess.run([MAKE_CA, d], check=True, capture_output=True)
    for name in os.listdir(d):
        os.chmod(os.path.join(d, name), 0o644)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def start(binary: str, certs: str, *options: str, cert: str = "server", flags=()) -> tuple[harness.Server, int]:
    """`binary -Z` (and `flags`) with a TLS listener and a `notls:` one;
    returns the server (its `port` the plain one, which answers `version` in
    plain text) and the TLS port. Another port pair is tried when one was
    taken between choosing and binding (servers start in parallel)."""
    extra = ",".join([f"ssl_chain_cert={certs}/{cert}.crt", f"ssl_key={certs}/{cert}.key", *options])
    for attempt in range(5):
        tls_port, plain_port = harness.free_port(), harness.free_port()
        argv = [binary, "-p", str(tls_port), "-U", "0", *harness._user_flags(), *flags, "-Z", "-o", extra,
                "-l", f"notls:{harness.HOST}:{plain_port},{harness.HOST}:{tls_port}"]
        try:
            return harness.spawn_listening(argv, plain_port, prefix="mctls-"), tls_port
        except RuntimeError as e:
            if "in use" not in str(e) or attempt == 4:
                raise
    raise AssertionError("unreachable")


def is_node(binary: str) -> bool:
    """The suite also runs against memcached (--target memcached)."""
    return os.path.basename(binary) == "memcluster-node"


@pytest.fixture
def node(target_bin, certs):
    srv, tls_port = start(target_bin, certs)
    yield srv, tls_port
    srv.stop()


def tls_socket(port: int, ctx: ssl.SSLContext, timeout: float = 5.0) -> ssl.SSLSocket:
    raw = socket.create_connection((harness.HOST, port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname=harness.HOST)


def exchange(sock, request: bytes, until: bytes = b"\r\n", timeout: float = 5.0) -> bytes:
    sock.sendall(request)
    sock.settimeout(timeout)
    data = b""
    while not data.endswith(until):
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        data += chunk
    return data


def stats(addr, arg: str = "") -> dict[str, str]:
    with harness.TextClient(addr) as c:
        return c.stats(arg)


def test_pymemcache_with_tls_context(node, certs):
    from pymemcache.client.base import Client
    srv, tls_port = node
    c = Client((harness.HOST, tls_port), tls_context=client_context(certs), connect_timeout=5, timeout=5)
    try:
        assert c.set("tls:k", b"over TLS") is True
        assert c.get("tls:k") == b"over TLS"
        assert c.get_many(["tls:k", "tls:missing"]) == {"tls:k": b"over TLS"}
        assert c.incr("tls:n", 1) is None
        assert c.delete("tls:k") is True
        assert c.get("tls:k") is None
    finally:
        c.close()
    # the same item store behind both listeners
    with harness.TextClient(srv.addr) as plain:
        assert plain.set("both", b"plain") == b"STORED"
    c = Client((harness.HOST, tls_port), tls_context=client_context(certs), connect_timeout=5, timeout=5)
    try:
        assert c.get("both") == b"plain"
    finally:
        c.close()


def test_large_values_and_pipelines_over_tls(node, certs):
    srv, tls_port = node
    big = bytes(range(256)) * 2000                      # 512,000 bytes: many TLS records
    with tls_socket(tls_port, client_context(certs)) as s:
        assert exchange(s, b"set big 0 0 %d\r\n" % len(big) + big + b"\r\n") == b"STORED\r\n"
        reply = exchange(s, b"get big\r\n" * 3, until=b"END\r\n" * 1)
        while reply.count(b"END\r\n") < 3:
            reply += s.recv(1 << 20)
        assert reply == (b"VALUE big 0 %d\r\n" % len(big) + big + b"\r\nEND\r\n") * 3
        pipeline = b"".join(b"set p%d 0 0 1\r\nx\r\n" % i for i in range(500))
        reply = exchange(s, pipeline, until=b"STORED\r\n")
        while reply.count(b"STORED\r\n") < 500:
            reply += s.recv(1 << 20)
        assert reply == b"STORED\r\n" * 500
    assert srv.alive()


def test_many_small_records_in_one_flight(node, certs):
    """Each request in its own TLS record (some split across two), all sent
    before any reply is read: the node reads records OpenSSL has already
    taken from the socket without waiting for another socket event."""
    srv, tls_port = node
    expected = b""
    with tls_socket(tls_port, client_context(certs)) as s:
        for i in range(300):
            s.sendall(b"set r%d 0 0 5\r\nva" % i)      # a record ending mid-value
            s.sendall(b"lue\r\n")
            s.sendall(b"get r%d\r\n" % i)
            expected += b"STORED\r\nVALUE r%d 0 5\r\nvalue\r\nEND\r\n" % i
        s.sendall(b"mn\r\n")
        expected += b"MN\r\n"
        reply = exchange(s, b"", until=b"MN\r\n")
    assert reply == expected
    assert srv.alive()


def test_requests_left_in_openssl_while_output_was_backed_up_are_answered(node, certs):
    """More than one read's worth of requests in one flight, whose replies pass
    the output high-water mark: reading pauses with the last record already
    inside OpenSSL (the socket empty), and must go on when the output drains."""
    srv, tls_port = node
    value = b"v" * 4000
    with harness.TextClient(srv.addr) as plain:
        assert plain.set("hw", value) == b"STORED"
    request = b"get hw\r\n"
    count = 40_000 // len(request)                      # 40 KB: three records, 20 MB of replies
    with tls_socket(tls_port, client_context(certs), timeout=20) as s:
        s.sendall(request * count + b"mn\r\n")
        reply = bytearray()
        while not reply.endswith(b"MN\r\n"):
            chunk = s.recv(1 << 20)
            assert chunk, "closed before the last reply"
            reply += chunk
    assert reply == (b"VALUE hw 0 4000\r\n" + value + b"\r\nEND\r\n") * count + b"MN\r\n"
    assert srv.alive()


def test_openssl_s_client(node, certs):
    srv, tls_port = node
    r = subprocess.run(["openssl", "s_client", "-connect", f"{harness.HOST}:{tls_port}", "-CAfile",
                        f"{certs}/ca.crt", "-verify_return_error", "-quiet", "-ign_eof"],
                       input=b"set sc 0 0 2\r\nok\r\nget sc\r\nquit\r\n", capture_output=True, timeout=20)
    assert r.stdout == b"STORED\r\nVALUE sc 0 2\r\nok\r\nEND\r\n", (r.stdout, r.stderr[-400:])


def test_tls_settings_and_counters_match_memcached(target_bin, reference_bin, certs):
    options = (f"ssl_ca_cert={certs}/ca.crt", "ssl_verify_mode=1", "ssl_min_version=3")
    answers = {}
    for name, binary in (("memcached", reference_bin), ("node", target_bin)):
        srv, _ = start(binary, certs, *options)
        try:
            settings = stats(srv.addr, "settings")
            answers[name] = ({k: v for k, v in settings.items() if k.startswith("ssl_")},
                             sorted(k for k in stats(srv.addr) if k.startswith("ssl_") or "cert" in k))
            with harness.TextClient(srv.addr) as c:
                answers[name] += (c.line("refresh_certs"),)
        finally:
            srv.stop()
    assert answers["node"] == answers["memcached"], answers


def test_refresh_certs_without_tls_answers_as_memcached(server_factory):
    with harness.TextClient(server_factory().addr) as c:
        assert c.line("refresh_certs") == b"Error TLS not enabled"


def test_client_certificates_with_verify_mode_2(target_bin, certs):
    srv, tls_port = start(target_bin, certs, f"ssl_ca_cert={certs}/ca.crt", "ssl_verify_mode=2")
    try:
        with tls_socket(tls_port, client_context(certs, cert="client")) as s:
            assert exchange(s, b"version\r\n").startswith(b"VERSION ")
        for cert in (None, "other-client"):
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                with tls_socket(tls_port, client_context(certs, cert=cert)) as s:
                    # TLS 1.3 reports a refused client certificate at the first read
                    reply = exchange(s, b"version\r\n")
                    if not reply:
                        raise ConnectionError("closed")
        assert srv.alive()
        if is_node(target_bin):
            # memcached does not count or log a refused client certificate; the
            # node does, right after OpenSSL has sent the client its alert: the
            # client may see it first.
            deadline = time.monotonic() + 5
            while int(stats(srv.addr)["ssl_handshake_errors"]) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert int(stats(srv.addr)["ssl_handshake_errors"]) >= 2
            while "TLS handshake failed" not in srv.log() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "TLS handshake failed" in srv.log()
    finally:
        srv.stop()


def test_plain_text_to_the_tls_port_is_refused_with_connections_and_rss_flat(node, certs):
    srv, tls_port = node
    # One stats connection throughout: a closed one may still be counted a moment.
    with harness.TextClient(srv.addr) as watcher:
        before = int(watcher.stats()["curr_connections"])
        rss = srv.rss_kib()
        for i in range(200):
            with socket.create_connection((harness.HOST, tls_port), timeout=5) as s:
                s.sendall(b"get k\r\n" if i % 2 else b"\x16\x03\x01\x00\x05hello garbage\r\n")
                s.settimeout(5)
                try:
                    while s.recv(4096):
                        pass
                except (ConnectionResetError, socket.timeout):
                    pass
        deadline = time.monotonic() + 5
        while int(watcher.stats()["curr_connections"]) != before and time.monotonic() < deadline:
            time.sleep(0.05)
        st = watcher.stats()
    assert int(st["curr_connections"]) <= before
    # the node counts every failed handshake; memcached only some kinds
    assert int(st["ssl_handshake_errors"]) >= (200 if is_node(srv.binary) else 1)
    assert srv.rss_kib() - rss < 20_000, f"RSS grew {srv.rss_kib() - rss} KiB over 200 refused handshakes"
    if is_node(srv.binary):
        log = srv.log(20000)
        assert "TLS handshake failed" in log and log.count("TLS handshake failed") < 50, "one line a second at most"


def test_tls_to_the_plain_port_and_wrong_certificates_are_refused(target_bin, certs, node):
    srv, tls_port = node
    with pytest.raises(ssl.SSLError):
        tls_socket(srv.port, client_context(certs))                # the notls: listener
    if is_node(srv.binary):
        deadline = time.monotonic() + 3
        while "a TLS handshake on a plain-text port" not in srv.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "a TLS handshake on a plain-text port" in srv.log()
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_socket(tls_port, client_context(certs, ca="other-ca"))  # a CA that did not sign it
    expired, expired_port = start(target_bin, certs, cert="expired")
    try:
        with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
            tls_socket(expired_port, client_context(certs))
        assert expired.alive()
    finally:
        expired.stop()
    assert srv.alive()


def test_a_stalled_handshake_holds_up_no_one(node, certs):
    srv, tls_port = node
    stalled = socket.create_connection((harness.HOST, tls_port))
    stalled.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # half a ClientHello, then nothing
    try:
        t0 = time.monotonic()
        with tls_socket(tls_port, client_context(certs)) as s:
            assert exchange(s, b"version\r\n").startswith(b"VERSION ")
        assert time.monotonic() - t0 < 2
    finally:
        stalled.close()


def test_half_a_record_costs_no_cpu_and_the_rest_is_answered(node, certs):
    """OpenSSL holds the first half of a record it cannot decrypt yet: the
    server must wait for the rest, not wake up again and again for it."""
    srv, tls_port = node
    check_half_a_record(tls_port, certs, srv.pid)


def check_half_a_record(tls_port: int, certs: str, pid: int) -> None:
    """Sends 100 `get`s in one record, first half only; the process `pid`
    may spend at most 0.1 s of CPU in the 2 s it waits for the rest, then
    must answer all 100 (misses)."""
    sock = socket.create_connection((harness.HOST, tls_port), timeout=5)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_context(certs).wrap_bio(incoming, outgoing, server_hostname=harness.HOST)

    def pump_until(done) -> bytes:
        data = b""
        deadline = time.monotonic() + 5
        while not done(data) and time.monotonic() < deadline:
            try:
                data += tls.read(1 << 20)
                continue
            except ssl.SSLWantReadError:
                pass
            if outgoing.pending:
                sock.sendall(outgoing.read())
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            incoming.write(chunk)
        return data

    try:
        for _ in range(20):
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if outgoing.pending:
                    sock.sendall(outgoing.read())
                incoming.write(sock.recv(1 << 16))
        if outgoing.pending:
            sock.sendall(outgoing.read())
        tls.write(b"version\r\n")
        sock.sendall(outgoing.read())
        assert pump_until(lambda data: data.endswith(b"\r\n")).startswith(b"VERSION ")
        tls.write(b"get nothing\r\n" * 100)
        record = outgoing.read()
        sock.sendall(record[:len(record) // 2])
        before = harness.cpu_ticks(pid)
        time.sleep(2)
        spent = harness.cpu_ticks(pid) - before
        assert spent <= 10, f"{spent} ticks of CPU while waiting for the rest of a record"
        sock.sendall(record[len(record) // 2:])
        assert pump_until(lambda data: data.count(b"END\r\n") == 100) == b"END\r\n" * 100
    finally:
        sock.close()


def test_refresh_certs_serves_the_new_certificate(target_bin, certs):
    d = tempfile.mkdtemp(prefix="mctls-refresh-")
    os.chmod(d, 0o755)
    try:
        for name in ("server.crt", "server.key"):
            shutil.copy(f"{certs}/{name}", f"{d}/{name}")
            os.chmod(f"{d}/{name}", 0o644)
        srv, tls_port = start(target_bin, d)
        try:
            def served_serial() -> int:
                with tls_socket(tls_port, client_context(certs)) as s:
                    return int(s.getpeercert()["serialNumber"], 16)
            first = served_serial()
            # a new certificate for the same key, from the same CA
            subprocess.run(["openssl", "req", "-new", "-key", f"{d}/server.key", "-subj", "/CN=127.0.0.1",
                            "-out", f"{d}/new.csr"], check=True, capture_output=True)
            with open(f"{d}/new.ext", "w") as f:
                f.write("subjectAltName=IP:127.0.0.1\n")
            subprocess.run(["openssl", "x509", "-req", "-in", f"{d}/new.csr", "-CA", f"{certs}/ca.crt",
                            "-CAkey", f"{certs}/ca.key", "-set_serial", "4242", "-days", "2",
                            "-extfile", f"{d}/new.ext", "-out", f"{d}/server.crt"], check=True, capture_output=True)
            os.chmod(f"{d}/server.crt", 0o644)
            assert served_serial() == first, "the certificate changed before refresh_certs"
            with harness.TextClient(srv.addr) as c:
                assert c.line("refresh_certs") == b"OK"
            assert served_serial() == 4242
            os.chmod(f"{d}/server.key", 0o000)
            with harness.TextClient(srv.addr) as c:
                answer = c.line("refresh_certs")
            assert answer.startswith(b"Error loading the key"), answer
            assert served_serial() == 4242, "a failed refresh must keep the running certificate"
        finally:
            srv.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_memcluster_bench_speaks_tls(node, certs):
    """memcluster-bench --tls-ca: the load generator over TLS (how TLS's cost
    is measured, docs/tls.md), every reply checked."""
    srv, tls_port = node
    bench = os.path.join(os.path.dirname(harness.DEFAULT_NODE), "memcluster-bench")
    r = subprocess.run([bench, "--server", f"{harness.HOST}:{tls_port}", "--tls-ca", f"{certs}/ca.crt", "--fill",
                        "--verify", "--keys", "500", "--requests", "5000", "-c", "4", "--pipeline", "4",
                        "--no-progress", "--json", "-"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    import json
    report = json.loads(r.stdout)
    assert report["ops"] >= 5000 and report["errors"]["total"] == 0, report["errors"]
    r = subprocess.run([bench, "--server", f"{harness.HOST}:{tls_port}", "--tls-ca", f"{certs}/other-ca.crt",
                        "--requests", "10", "--no-progress"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0, "a server certificate from another CA must be refused"
