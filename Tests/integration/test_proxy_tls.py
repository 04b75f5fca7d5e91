"""TLS through the proxy (`tls:` for its clients, `node_tls:` to its nodes),
with the test CA of scripts/make-test-ca:

- `node_tls:` in front of three nodes that speak only TLS, Debian's
  memcached `-Z` (so proxy-to-node TLS is proven against memcached's
  implementation) and memcluster-node `-Z`: pymemcache through the proxy
  sets, gets and deletes, every node up;
- `node_tls:` with a CA that did not sign the nodes' certificates: no node
  comes up, clients get `SERVER_ERROR`, the proxy logs why and stays up;
- `tls:` for clients: pymemcache with `tls_context`; plain text to it is
  refused; with `verify_clients: true` a client without a certificate is
  refused and one with the test CA's is served; half a record from a client
  costs the proxy no CPU while it waits for the rest;
- `node_auth:` in front of memcached `-Y` and memcluster-node `-Y` nodes: the
  proxy logs in on every link; a wrong password is refused, logged without
  the password, and the nodes are marked down.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import pytest

import harness
import proxy_harness as ph
from test_tls import certs, check_half_a_record, exchange, start, tls_socket  # noqa: F401 (certs is a fixture)
from tls_relay import client_context


def tls_nodes(binary: str, certs: str, count: int = 3):
    return [start(binary, certs) for _ in range(count)]


def write_config(path: str, listen: int, node_ports, extra: str) -> None:
    nodes = "".join(f"  - {harness.HOST}:{p}\n" for p in node_ports)
    with open(path, "w") as f:
        f.write(f"listen: {harness.HOST}:{listen}\nthreads: 2\nreplicas: 2\nrequest_timeout_ms: 500\n"
                f"connect_timeout_ms: 500\nprobe_initial_ms: 100\nprobe_max_ms: 400\n{extra}nodes:\n{nodes}")


def spawn_proxy(config: str, port: int, plain: bool = True) -> harness.Server:
    argv = [ph.proxy_binary(), "--config", config]
    if plain:
        return ph.spawn(argv, harness.HOST, port, prefix="mcproxy-tls-")
    fd, log_path = tempfile.mkstemp(prefix="mcproxy-tls-", suffix=".log")
    with os.fdopen(fd, "wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    srv = harness.Server(argv[0], argv[1:], port, proc, log_path, argv=argv)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not srv.alive():
            raise RuntimeError(f"proxy exited: {srv.log()}")
        try:
            socket.create_connection((harness.HOST, port), timeout=1).close()
            return srv
        except OSError:
            time.sleep(0.05)
    srv.stop()
    raise RuntimeError(f"proxy did not listen: {srv.log()}")


def node_states(addr) -> list[str]:
    with harness.TextClient(addr) as c:
        st = c.stats("nodes")
    return [v for k, v in sorted(st.items()) if k.endswith(":state")]


@pytest.mark.parametrize("nodes_are", ["memcached", "node"])
def test_node_tls_in_front_of_nodes_that_speak_only_tls(nodes_are, certs, tmp_path, reference_bin, target_bin):
    from pymemcache.client.base import Client
    binary = reference_bin if nodes_are == "memcached" else target_bin
    if nodes_are == "node" and os.path.basename(binary) != "memcluster-node":
        binary = harness.DEFAULT_NODE
    nodes = tls_nodes(binary, certs)
    proxy = None
    try:
        listen = harness.free_port()
        config = str(tmp_path / "proxy.yaml")
        write_config(config, listen, [port for _, port in nodes], f"node_tls:\n  ca: {certs}/ca.crt\n")
        proxy = spawn_proxy(config, listen)
        c = Client((harness.HOST, listen), connect_timeout=5, timeout=5)
        try:
            for i in range(200):
                assert c.set(f"nt:{i}", b"v%d" % i) is True
            got = c.get_many([f"nt:{i}" for i in range(200)])
            assert got == {f"nt:{i}": b"v%d" % i for i in range(200)}
            assert c.delete("nt:0") is True and c.get("nt:0") is None
        finally:
            c.close()
        assert node_states(proxy.addr) == ["up", "up", "up"]
        # each key on two nodes, seen through their plain notls: listeners
        held = 0
        for srv, _ in nodes:
            with harness.TextClient(srv.addr) as nc:
                held += sum(nc.get(f"nt:{i}") is not None for i in range(1, 200))
        assert held == 2 * 199
    finally:
        if proxy:
            proxy.stop()
        for srv, _ in nodes:
            srv.stop()


def test_node_tls_with_the_wrong_ca_is_refused_and_said(certs, tmp_path, target_bin):
    nodes = tls_nodes(target_bin, certs, count=2)
    proxy = None
    try:
        listen = harness.free_port()
        config = str(tmp_path / "proxy.yaml")
        write_config(config, listen, [port for _, port in nodes], f"node_tls:\n  ca: {certs}/other-ca.crt\n")
        proxy = spawn_proxy(config, listen)
        with harness.TextClient(proxy.addr) as c:
            for i in range(20):
                c.line(f"get wrong:{i}")
            ph.wait_until(lambda: set(node_states(proxy.addr)) == {"down"}, 10, what="nodes marked down")
            assert c.line("get wrong:x").startswith(b"SERVER_ERROR")
        assert proxy.alive()
        assert "TLS handshake failed" in proxy.log(20000) and "certificate verify failed" in proxy.log(20000)
        for srv, _ in nodes:
            assert srv.alive()
    finally:
        if proxy:
            proxy.stop()
        for srv, _ in nodes:
            srv.stop()


@pytest.mark.parametrize("verify_clients", [False, True])
def test_clients_over_tls(verify_clients, certs, tmp_path):
    from pymemcache.client.base import Client
    node = harness.start_server(harness.DEFAULT_NODE)
    proxy = None
    try:
        listen = harness.free_port()
        config = str(tmp_path / "proxy.yaml")
        extra = f"tls:\n  cert: {certs}/server.crt\n  key: {certs}/server.key\n"
        if verify_clients:
            extra += f"  ca: {certs}/ca.crt\n  verify_clients: true\n"
        write_config(config, listen, [node.port], extra)
        proxy = spawn_proxy(config, listen, plain=False)
        ctx = client_context(certs, cert="client" if verify_clients else None)
        c = Client((harness.HOST, listen), tls_context=ctx, connect_timeout=5, timeout=5)
        try:
            assert c.set("ct:k", b"through TLS") is True
            assert c.get("ct:k") == b"through TLS"
            assert c.get_many(["ct:k", "ct:none"]) == {"ct:k": b"through TLS"}
        finally:
            c.close()
        with harness.TextClient(node.addr) as nc:
            assert nc.get("ct:k") == b"through TLS"
        with socket.create_connection((harness.HOST, listen), timeout=5) as s:
            s.sendall(b"get ct:k\r\n")
            s.settimeout(5)
            try:
                assert b"VALUE" not in s.recv(4096)
            except (ConnectionResetError, socket.timeout):
                pass
        if verify_clients:
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                with tls_socket(listen, client_context(certs)) as s:
                    if not exchange(s, b"version\r\n"):
                        raise ConnectionError("closed")
        assert proxy.alive()
    finally:
        if proxy:
            proxy.stop()
        node.stop()


def test_half_a_record_from_a_client_costs_the_proxy_no_cpu(certs, tmp_path):
    node = harness.start_server(harness.DEFAULT_NODE)
    proxy = None
    try:
        listen = harness.free_port()
        config = str(tmp_path / "proxy.yaml")
        write_config(config, listen, [node.port], f"tls:\n  cert: {certs}/server.crt\n  key: {certs}/server.key\n")
        proxy = spawn_proxy(config, listen, plain=False)
        check_half_a_record(listen, certs, proxy.pid)
        assert proxy.alive()
    finally:
        if proxy:
            proxy.stop()
        node.stop()


def auth_nodes(binary: str, auth_file: str, count: int = 2):
    from test_auth import start as start_with_auth
    return [start_with_auth(binary, auth_file) for _ in range(count)]


@pytest.mark.parametrize("nodes_are", ["memcached", "node"])
def test_node_auth_logs_in_to_nodes_started_with_y(nodes_are, tmp_path, reference_bin):
    """node_auth: every link logs in first (requests, health probes, stats
    polls); a wrong password is refused by the nodes, said once a second at
    most in the proxy's log, and the nodes are marked down."""
    from pymemcache.client.base import Client
    d = tempfile.mkdtemp(prefix="mcauth-proxy-")
    os.chmod(d, 0o755)
    users = os.path.join(d, "users")
    with open(users, "w") as f:
        f.write("proxy:s3cret-for-nodes\n")
    os.chmod(users, 0o644)
    binary = reference_bin if nodes_are == "memcached" else harness.DEFAULT_NODE
    nodes = auth_nodes(binary, users)
    proxies = []
    try:
        for password in ("s3cret-for-nodes", "wrong"):
            secret = tmp_path / f"password-{password}"
            secret.write_text(password + "\n")
            listen = harness.free_port()
            config = str(tmp_path / f"proxy-{password}.yaml")
            write_config(config, listen, [srv.port for srv in nodes],
                         f"node_auth:\n  user: proxy\n  password_file: {secret}\n")
            proxy = spawn_proxy(config, listen)
            proxies.append(proxy)
            c = Client((harness.HOST, listen), connect_timeout=5, timeout=5)
            try:
                if password != "wrong":
                    for i in range(50):
                        assert c.set(f"na:{i}", b"v%d" % i) is True
                    assert c.get_many([f"na:{i}" for i in range(50)]) == {f"na:{i}": b"v%d" % i for i in range(50)}
                    assert node_states(proxy.addr) == ["up", "up"]
                else:
                    for i in range(10):
                        with pytest.raises(Exception):
                            c.get(f"na:{i}")
                    ph.wait_until(lambda: set(node_states(proxy.addr)) == {"down"}, 10, what="nodes marked down")
                    log = proxy.log(20000)
                    assert "refused the login (node_auth)" in log
                    assert "wrong" not in log.replace("wrong password", ""), "the password must never be logged"
                    assert proxy.alive()
            finally:
                c.close()
    finally:
        for proxy in proxies:
            proxy.stop()
        for srv in nodes:
            srv.stop()
        os.unlink(users)
        os.rmdir(d)


@pytest.mark.parametrize("nodes_are", ["memcached", "node"])
def test_node_auth_password_rotated_without_a_restart(nodes_are, tmp_path, reference_bin):
    """The operator's rotation: the new entry added to the nodes' file
    (SIGHUP), the proxy reloaded with the new password, the old entry
    removed (SIGHUP). Links opened after the reload log in with the new
    password: a node restarted then is back up and serves."""
    from pymemcache.client.base import Client
    from test_auth import write_file
    d = tempfile.mkdtemp(prefix="mcauth-rotate-")
    os.chmod(d, 0o755)
    users = write_file(d, "users", b"proxy:old-pass\n")
    binary = reference_bin if nodes_are == "memcached" else harness.DEFAULT_NODE
    nodes = auth_nodes(binary, users)
    secret = tmp_path / "password"
    secret.write_text("old-pass\n")
    listen = harness.free_port()
    config = str(tmp_path / "proxy.yaml")
    write_config(config, listen, [srv.port for srv in nodes], f"node_auth:\n  user: proxy\n  password_file: {secret}\n")
    proxy = spawn_proxy(config, listen)
    c = Client((harness.HOST, listen), connect_timeout=5, timeout=5)
    try:
        for i in range(20):
            assert c.set(f"rot:{i}", b"v%d" % i) is True
        write_file(d, "users", b"proxy:old-pass\nproxy:new-pass\n")
        for srv in nodes:
            os.kill(srv.pid, signal.SIGHUP)
        secret.write_text("new-pass\n")
        os.kill(proxy.pid, signal.SIGHUP)
        ph.wait_until(lambda: "configuration reloaded" in proxy.log(20000), 10, what="the proxy reloaded")
        time.sleep(1.5)                                   # memcached reads the file on its next clock tick
        write_file(d, "users", b"proxy:new-pass\n")
        for srv in nodes:
            os.kill(srv.pid, signal.SIGHUP)
        time.sleep(1.5)
        # every link the proxy opens from now on must use the new password
        restarted = nodes[0]
        restarted.stop()
        nodes[0] = harness.spawn_listening(restarted.argv, restarted.port, prefix="mcauth-")

        def all_written():
            return all(c.set(f"rot:{i}", b"v%d" % i) for i in range(20, 60)) and node_states(proxy.addr) == ["up", "up"]
        ph.wait_until(all_written, 15, what="writes served with the restarted node up")
        got = c.get_many([f"rot:{i}" for i in range(20, 60)])
        assert got == {f"rot:{i}": b"v%d" % i for i in range(20, 60)}
        # the restarted node holds keys written through the proxy: it logged in, never refused
        with socket.create_connection(nodes[0].addr, timeout=5) as s:
            assert exchange(s, b"set x 0 0 14\r\nproxy new-pass\r\n") == b"STORED\r\n"
            st = exchange(s, b"stats\r\n", until=b"END\r\n")
        lines = dict(l.split(b" ", 2)[1:] for l in st.split(b"\r\n") if l.startswith(b"STAT "))
        assert int(lines[b"curr_items"]) > 0 and lines[b"auth_errors"] == b"0", lines
        assert "refused the login" not in proxy.log(20000)
        assert proxy.alive()
    finally:
        c.close()
        proxy.stop()
        for srv in nodes:
            srv.stop()
        shutil.rmtree(d, ignore_errors=True)


def test_node_auth_password_with_a_space_is_refused(tmp_path):
    secret = tmp_path / "password"
    secret.write_text("two words\n")
    config = str(tmp_path / "proxy.yaml")
    write_config(config, harness.free_port(), [harness.free_port()], f"node_auth:\n  user: proxy\n  password_file: {secret}\n")
    r = subprocess.run([ph.proxy_binary(), "--config", config, "--check-config"], capture_output=True, text=True, timeout=10)
    assert r.returncode != 0
    assert "a password with a space can never log in" in r.stdout + r.stderr


def test_a_tls_client_on_the_plain_listener_is_said(certs, tmp_path):
    """Without tls: a TLS client's handshake is answered as text (the client
    gives up) and the proxy says why, once a second at most."""
    node = harness.start_server(harness.DEFAULT_NODE)
    listen = harness.free_port()
    config = str(tmp_path / "proxy.yaml")
    write_config(config, listen, [node.port], "")
    proxy = spawn_proxy(config, listen)
    try:
        for _ in range(20):
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                tls_socket(listen, client_context(certs), timeout=2).close()
        ph.wait_until(lambda: "a TLS handshake on the plain-text listener" in proxy.log(20000), 5,
                      what="the proxy said it")
        assert proxy.log(20000).count("a TLS handshake on the plain-text listener") < 10
        with harness.TextClient(proxy.addr) as c:
            assert c.set("plain:k", b"still served") == b"STORED"
        assert proxy.alive()
    finally:
        proxy.stop()
        node.stop()
