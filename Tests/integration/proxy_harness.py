"""Helpers for the proxy's black-box tests: a cluster of cache nodes with a
memcluster-proxy in front, started on free loopback ports with a YAML file
in a temporary directory; pipelined raw-protocol helpers; reading what each
node holds directly; network namespaces for real link cuts.

Everything is bounded (every wait has a deadline, every loop a count) and
every process started is killed by PID (`Cluster.stop`). Only loopback
addresses are contacted, or addresses inside network namespaces created here.
"""

from __future__ import annotations

import ctypes
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid

import pytest

import harness
from harness import HOST, RawConn, Server, TextClient

DEFAULT_PROXY = os.path.join(harness.REPO_ROOT, ".build", "release", "memcluster-proxy")

# Health settings used by the tests unless a test asks otherwise: short
# enough that failover and recovery take a few seconds, not minutes.
FAST_HEALTH = {
    "request_timeout_ms": 500,
    "connect_timeout_ms": 500,
    "failure_limit": 2,
    "probe_initial_ms": 100,
    "probe_max_ms": 400,
}

# One proxy learns a membership change the moment it reloads, so the tests
# that drive a single proxy switch its reads at once (no guarded phase);
# the tests of proxies that disagree set membership_settle_ms themselves.
# The rebalance copies keys in the background after a change; the tests that
# check where a change put keys turn it on themselves (test_proxy_rebalance.py).
ONE_PROXY_MEMBERSHIP = {"membership_settle_ms": 0, "rebalance": False}


def proxy_binary() -> str:
    return os.environ.get("MEMCLUSTER_PROXY", DEFAULT_PROXY)


def node_binary() -> str:
    """The cache nodes behind the proxy: the suite's target (memcluster-node,
    or memcached with MEMCLUSTER_TARGET=memcached, which tests the proxy in
    front of the real thing)."""
    return harness.target_binary()


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Polls predicate() until it returns something truthy (returned) or the
    timeout passes (TimeoutError naming `what`)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not true after {timeout} s (last: {last!r})")
        time.sleep(interval)


def all_threads_stopped(pid: int) -> bool:
    """Whether every thread of `pid` is in state T (stopped) or t (traced)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
        for tid in tids:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            if state not in ("T", "t"):
                return False
    except FileNotFoundError:
        return False
    return bool(tids)


# --------------------------------------------------------------------------
# Network namespaces (for a real link cut)
# --------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def run_in_netns(name: str | None, fn, timeout: float = 60.0):
    """Runs fn() on a thread that has joined network namespace `name` (None:
    this namespace) and returns its result. Sockets created there stay in that
    namespace and can be used from any thread afterwards."""
    if name is None:
        return fn()
    box: dict = {}

    def body():
        try:
            fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({name}): {os.strerror(err)}")
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            box["error"] = e

    t = threading.Thread(target=body, name=f"netns-{name}", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"work inside netns {name} did not finish in {timeout} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20,
                       stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")
    return p


class NetnsPair:
    """Two network namespaces created by the test, `a` and `b`, joined by a
    veth pair with private addresses that exist only inside them:
    `a_addr` (in a, on `a_if`) and `b_addr` (in b, on `b_if`). Each has its
    own loopback up. `cut()` / `heal()` take b's end of the link down / up.
    `delete()` removes both namespaces (and with them the veth pair)."""

    def __init__(self, subnet: str = "10.233.7"):
        tag = uuid.uuid4().hex[:6]
        self.a = f"mcpt-{tag}-a"
        self.b = f"mcpt-{tag}-b"
        self.a_if = f"mcpta{tag}"
        self.b_if = f"mcptb{tag}"
        self.a_addr = f"{subnet}.1"
        self.b_addr = f"{subnet}.2"
        self.created: list[str] = []

    def create(self) -> "NetnsPair":
        for ns in (self.a, self.b):
            ip("netns", "add", ns)
            self.created.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        # create the pair inside `a` directly, then move one end to `b`:
        # nothing is ever added to the namespace this test runs in
        ip("-n", self.a, "link", "add", self.a_if, "type", "veth", "peer", "name", self.b_if)
        ip("-n", self.a, "link", "set", self.b_if, "netns", self.b)
        ip("-n", self.a, "addr", "add", f"{self.a_addr}/30", "dev", self.a_if)
        ip("-n", self.b, "addr", "add", f"{self.b_addr}/30", "dev", self.b_if)
        ip("-n", self.a, "link", "set", self.a_if, "up")
        ip("-n", self.b, "link", "set", self.b_if, "up")
        return self

    def cut(self) -> None:
        """b's end goes down (b's NIC dies): a's end loses carrier; what a
        sends meanwhile may wait in a's queue and arrive after heal()."""
        ip("-n", self.b, "link", "set", self.b_if, "down")

    def heal(self) -> None:
        ip("-n", self.b, "link", "set", self.b_if, "up")

    def cut_near(self) -> None:
        """a's end goes down: a has no route to b at all, nothing a sends
        meanwhile can reach b later (TCP keeps it in the socket, and the
        proxy's abort drops it)."""
        ip("-n", self.a, "link", "set", self.a_if, "down")

    def heal_near(self) -> None:
        ip("-n", self.a, "link", "set", self.a_if, "up")

    def delete(self) -> None:
        for ns in reversed(self.created):
            ip("netns", "del", ns, check=False)
        self.created.clear()


# The one reason a test may be skipped (conftest.py reports every other skip
# as a failure): creating network namespaces needs root, and a developer
# running the suite as themselves should still get a clean run of the rest.
NEEDS_ROOT = "needs root: network namespaces"


def skip_unless_root() -> None:
    if os.geteuid() != 0:
        pytest.skip(NEEDS_ROOT)


def require_netns() -> None:
    """For tests that create network namespaces: skipped when not root; as
    root, namespaces that cannot be created are a failure, never a skip."""
    skip_unless_root()
    ok, why = netns_available()
    assert ok, f"cannot create network namespaces here: {why}"


def netns_available() -> tuple[bool, str]:
    """Whether this process may create namespaces and veth pairs."""
    if shutil.which("ip") is None:
        return False, "the `ip` tool (iproute2) is not installed"
    pair = NetnsPair()
    try:
        pair.create()
        return True, ""
    except Exception as e:  # noqa: BLE001
        return False, str(e)
    finally:
        pair.delete()


# --------------------------------------------------------------------------
# Connections (optionally inside a namespace)
# --------------------------------------------------------------------------

def _socket_to(addr, netns: str | None, timeout: float) -> socket.socket:
    return run_in_netns(netns, lambda: socket.create_connection(addr, timeout=timeout))


class NsRawConn(RawConn):
    """harness.RawConn over a socket made in `netns` (or here when None)."""

    def __init__(self, addr, timeout: float = 5.0, netns: str | None = None):  # noqa: D107
        self.sock = _socket_to(addr, netns, timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.buf = bytearray()
        self.eof = False
        self.reset = False
        self.send_failed = False


class NsTextClient(TextClient):
    def __init__(self, addr, timeout: float = 5.0, netns: str | None = None):  # noqa: D107
        self.conn = NsRawConn(addr, timeout=timeout, netns=netns)
        self.timeout = timeout


# --------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------

def _answers_version(addr, netns: str | None) -> bool:
    try:
        s = _socket_to(addr, netns, 0.5)
    except OSError:
        return False
    try:
        s.settimeout(0.5)
        s.sendall(b"version\r\n")
        buf = b""
        while not buf.endswith(b"\n") and len(buf) < 4096:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
        return buf.startswith(b"VERSION ")
    except OSError:
        return False
    finally:
        s.close()


def spawn(argv: list[str], host: str, port: int, netns: str | None = None,
          timeout: float = harness.START_TIMEOUT, prefix: str = "mcproc-") -> Server:
    """Starts argv (inside `netns` when given) and waits until host:port
    answers `version`. Raises RuntimeError with the log when it does not."""
    full = (["ip", "netns", "exec", netns] if netns else []) + list(argv)
    fd, log_path = tempfile.mkstemp(prefix=prefix, suffix=".log")
    with os.fdopen(fd, "wb") as logf:
        proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=subprocess.STDOUT, close_fds=True)
    srv = Server(argv[0], list(argv[1:]), port, proc, log_path, host=host, argv=full)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not srv.alive():
            log = srv.log()
            srv.stop()
            raise RuntimeError(f"{srv.describe()} exited with {proc.returncode}: {log}")
        if _answers_version((host, port), netns):
            return srv
        time.sleep(0.02)
    log = srv.log()
    srv.stop()
    raise RuntimeError(f"{srv.describe()} did not answer `version` within {timeout} s: {log}")


def start_node(binary: str | None = None, port: int | None = None, host: str = HOST,
               netns: str | None = None, flags=(), attempts: int = 5) -> Server:
    """A cache node (memcached flags) on host:port; a free port when none is
    given (retried if it was taken meanwhile)."""
    binary = binary or node_binary()
    last = None
    for _ in range(attempts if port is None else 1):
        p = port if port is not None else harness.free_port()
        argv = [binary, "-l", host, "-p", str(p), "-U", "0", *harness._user_flags(), *flags]
        try:
            return spawn(argv, host, p, netns=netns, prefix="mcnode-")
        except RuntimeError as e:
            last = e
            if "in use" not in str(e) and "bind" not in str(e).lower():
                break
    raise RuntimeError(f"node did not start: {last}")


def start_node_on_port(port: int, binary: str | None = None, host: str = HOST,
                       netns: str | None = None, flags=(), timeout: float = 10.0) -> Server:
    """Starts a node on a given port, retrying while the port is still held
    (e.g. just after the previous process on it was killed)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return start_node(binary, port=port, host=host, netns=netns, flags=flags)
        except RuntimeError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


# --------------------------------------------------------------------------
# YAML
# --------------------------------------------------------------------------

def _yaml_scalar(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    s = str(v)
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(options: dict, nodes: list | None, discovery: dict | None = None) -> str:
    """The proxy's YAML: options as `key: value`, nodes as strings
    (`host:port[:weight] [name]`) or mappings (address/weight/name); or,
    instead of nodes, a `discovery:` mapping."""
    out = ["# written by the integration tests"]
    for k, v in options.items():
        if v is None:
            continue
        out.append(f"{k}: {_yaml_scalar(v)}")
    if discovery is not None:
        out.append("discovery:")
        out += [f"  {k}: {_yaml_scalar(v)}" for k, v in discovery.items() if v is not None]
        return "\n".join(out) + "\n"
    out.append("nodes:")
    for n in nodes:
        if isinstance(n, dict):
            first = True
            for k, v in n.items():
                out.append(("  - " if first else "    ") + f"{k}: {_yaml_scalar(v)}")
                first = False
        else:
            out.append(f"  - {_yaml_scalar(n)}")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------
# The cluster
# --------------------------------------------------------------------------

class Cluster:
    """N cache nodes and one proxy in front of them.

    `node_specs[i]` is what the YAML says about node i: a dict with weight
    and name (None = not given). The proxy always reads a YAML file (so it
    can be reloaded); `options` are its top-level keys.
    """

    def __init__(self, n: int = 3, replicas: int | None = 2, weights=None, names=None,
                 hash_mode: str | None = None, options: dict | None = None,
                 metrics: bool = False, node_flags=(), threads: int = 2,
                 netns: str | None = None, node_netns: list | None = None,
                 node_hosts: list | None = None, node_ports: list | None = None,
                 proxy_port: int | None = None, start_proxy: bool = True,
                 node_style: str = "string", node_bin: str | None = None,
                 discovery: dict | None = None):
        self.node_bin = node_bin or node_binary()
        self.netns = netns                      # where the proxy (and the test's connections) live
        self.node_netns = node_netns or [netns] * n
        self.node_hosts = node_hosts or [HOST] * n
        self.node_flags = list(node_flags)
        self.tmpdir = tempfile.mkdtemp(prefix="mcproxy-")
        self.config_path = os.path.join(self.tmpdir, "proxy.yaml")
        self.nodes: list[Server] = []
        self.node_specs: list[dict] = []
        self.proxy: Server | None = None
        self.conns: list = []
        self.retired: list[Server] = []
        self.node_style = node_style
        # With `discovery`, the YAML names the nodes by a DNS name instead of
        # listing them (write_config(node_indices=...) still lists them).
        self.discovery = discovery
        self.options = {"threads": threads, "replicas": replicas, "hash": hash_mode,
                        **FAST_HEALTH, **ONE_PROXY_MEMBERSHIP, **(options or {})}
        self.metrics_addr = None
        weights = weights or [None] * n
        names = names or [None] * n
        try:
            for i in range(n):
                self.add_node(weight=weights[i], name=names[i],
                              port=(node_ports[i] if node_ports else None),
                              host=self.node_hosts[i], netns=self.node_netns[i])
            if start_proxy:
                self.start_proxy(proxy_port=proxy_port, metrics=metrics)
        except BaseException:
            self.stop()
            raise

    # -- nodes -------------------------------------------------------------
    def add_node(self, weight=None, name=None, port=None, host=HOST, netns=None) -> int:
        """Starts one more node (not in the proxy's configuration until
        write_config() and a reload). Returns its index."""
        if port is not None:
            srv = start_node_on_port(port, binary=self.node_bin, host=host, netns=netns,
                                     flags=self.node_flags)
        else:
            srv = start_node(self.node_bin, host=host, netns=netns, flags=self.node_flags)
        srv.netns = netns
        self.nodes.append(srv)
        self.node_specs.append({"weight": weight, "name": name})
        return len(self.nodes) - 1

    def node_entry(self, i: int):
        srv, spec = self.nodes[i], self.node_specs[i]
        if self.node_style == "mapping":
            d = {"address": f"{srv.host}:{srv.port}"}
            if spec["weight"] is not None:
                d["weight"] = spec["weight"]
            if spec["name"] is not None:
                d["name"] = spec["name"]
            return d
        s = f"{srv.host}:{srv.port}"
        if spec["weight"] is not None:
            s += f":{spec['weight']}"
        if spec["name"] is not None:
            s += f" {spec['name']}"
        return s

    def node_addr(self, i: int) -> str:
        return f"{self.nodes[i].host}:{self.nodes[i].port}"

    def write_config(self, node_indices=None, raw: str | None = None, **overrides) -> str:
        """(Re)writes the YAML: the given nodes (default all) in order, or raw
        text as is. Returns the text written."""
        if raw is None:
            idx = range(len(self.nodes)) if node_indices is None else node_indices
            opts = dict(self.options)
            opts.update(overrides)
            if self.discovery is not None and node_indices is None:
                text = render_config(opts, None, discovery=self.discovery)
            else:
                text = render_config(opts, [self.node_entry(i) for i in idx])
        else:
            text = raw
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)
        return text

    def kill_node(self, i: int) -> None:
        """SIGKILL node i and wait for it to be gone."""
        srv = self.nodes[i]
        os.kill(srv.pid, signal.SIGKILL)
        srv.proc.wait(timeout=10)
        self.retired.append(srv)

    def restart_node(self, i: int, timeout: float = 10.0) -> Server:
        """Starts node i again, empty, on the same address."""
        old = self.nodes[i]
        if old.alive():
            self.kill_node(i)
        srv = start_node_on_port(old.port, binary=self.node_bin, host=old.host,
                                 netns=getattr(old, "netns", None),
                                 flags=self.node_flags, timeout=timeout)
        srv.netns = getattr(old, "netns", None)
        self.nodes[i] = srv
        return srv

    def sigstop(self, i: int, timeout: float = 2.0) -> None:
        """SIGSTOP node i and wait until every thread of it is stopped:
        kill() returns before the stop takes effect, and a request sent at
        once is otherwise still answered about one time in ten."""
        pid = self.nodes[i].pid
        os.kill(pid, signal.SIGSTOP)
        wait_until(lambda: all_threads_stopped(pid), timeout, interval=0.001,
                   what=f"every thread of node {i} (pid {pid}) stopped after SIGSTOP")

    def sigcont(self, i: int) -> None:
        os.kill(self.nodes[i].pid, signal.SIGCONT)

    # -- proxy -------------------------------------------------------------
    def start_proxy(self, proxy_port: int | None = None, metrics: bool = False,
                    extra_args=(), attempts: int = 5) -> Server:
        last = None
        for _ in range(attempts):
            port = proxy_port or harness.free_port()
            self.options["listen"] = f"{HOST}:{port}"
            if metrics:
                mport = harness.free_port()
                self.options["metrics_listen"] = f"{HOST}:{mport}"
                self.metrics_addr = (HOST, mport)
            self.write_config()
            argv = [proxy_binary(), "--config", self.config_path, *extra_args]
            try:
                self.proxy = spawn(argv, HOST, port, netns=self.netns, prefix="mcproxy-")
                return self.proxy
            except RuntimeError as e:
                last = e
                if proxy_port is not None or "in use" not in str(e).lower():
                    break
        raise RuntimeError(f"proxy did not start: {last}")

    @property
    def addr(self):
        return self.proxy.addr

    def proxy_log(self) -> str:
        return self.proxy.log(20000) if self.proxy else ""

    def sighup(self) -> None:
        os.kill(self.proxy.pid, signal.SIGHUP)

    def http(self, method: str, path: str, timeout: float = 5.0, headers: dict | None = None,
             body: bytes | None = None) -> tuple[int, dict, str]:
        """One HTTP request to the metrics address: (status, headers, body).
        http.client adds Host (unless `headers` has one), and Content-Length: 0
        to a POST without a body."""
        assert self.metrics_addr, "cluster started without metrics"

        def go():
            c = http.client.HTTPConnection(*self.metrics_addr, timeout=timeout)
            try:
                c.request(method, path, body=body, headers=headers or {})
                r = c.getresponse()
                return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode("utf-8", "replace")
            finally:
                c.close()
        return run_in_netns(self.netns, go)

    # -- connections -------------------------------------------------------
    def raw(self, timeout: float = 5.0, addr=None, netns="proxy") -> NsRawConn:
        ns = self.netns if netns == "proxy" else netns
        c = NsRawConn(addr or self.addr, timeout=timeout, netns=ns)
        self.conns.append(c)
        return c

    def client(self, timeout: float = 5.0) -> NsTextClient:
        c = NsTextClient(self.addr, timeout=timeout, netns=self.netns)
        self.conns.append(c)
        return c

    def node_client(self, i: int, timeout: float = 5.0) -> NsTextClient:
        srv = self.nodes[i]
        c = NsTextClient(srv.addr, timeout=timeout, netns=getattr(srv, "netns", None))
        self.conns.append(c)
        return c

    # -- observation -------------------------------------------------------
    def stats(self, arg: str = "") -> dict[str, str]:
        c = self.client()
        try:
            return c.stats(arg)
        finally:
            c.close()

    def node_states(self) -> list[str]:
        st = self.stats("nodes")
        out = []
        i = 0
        while f"node:{i}:state" in st:
            out.append(st[f"node:{i}:state"])
            i += 1
        return out

    def wait_node_state(self, i: int, state: str, timeout: float = 10.0) -> float:
        """Waits until `stats nodes` shows node i in `state`; returns the
        seconds it took."""
        t0 = time.monotonic()
        wait_until(lambda: (s := self.node_states()) and len(s) > i and s[i] == state,
                   timeout, interval=0.05, what=f"node {i} ({self.node_addr(i)}) state {state}; "
                   f"states now {self.node_states()}")
        return time.monotonic() - t0

    def node_contents(self, i: int, keys: list[str]) -> dict[str, bytes]:
        """key -> value for the keys node i holds (read on the node itself)."""
        c = self.node_client(i, timeout=10)
        try:
            return multi_get(c.conn, keys)
        finally:
            c.close()

    def placement(self, keys: list[str]) -> dict[str, list[tuple[int, bytes]]]:
        """key -> [(node index, value)] for every node holding it."""
        out: dict[str, list] = {k: [] for k in keys}
        for i in range(len(self.nodes)):
            if not self.nodes[i].alive():
                continue
            for k, v in self.node_contents(i, keys).items():
                out[k].append((i, v))
        return out

    def describe(self) -> str:
        lines = [f"config {self.config_path}:"]
        try:
            with open(self.config_path) as f:
                lines.append(f.read())
        except OSError:
            pass
        for i, n in enumerate(self.nodes):
            lines.append(f"node {i}: {n.describe()} alive={n.alive()}")
        if self.proxy:
            lines.append(f"proxy: {self.proxy.describe()} alive={self.proxy.alive()}")
            lines.append("proxy log (tail):\n" + self.proxy.log(6000))
        return "\n".join(lines)

    # -- teardown ----------------------------------------------------------
    def stop(self) -> None:
        for c in self.conns:
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass
        self.conns.clear()
        if self.proxy is not None:
            self.proxy.stop()
        for srv in [*self.nodes, *self.retired]:
            try:
                if srv.alive():
                    os.kill(srv.pid, signal.SIGCONT)   # a stopped process dies only once continued
            except ProcessLookupError:
                pass
            srv.stop()
        shutil.rmtree(self.tmpdir, ignore_errors=True)


# --------------------------------------------------------------------------
# Pipelined protocol helpers
# --------------------------------------------------------------------------

_VALUE_HEAD = re.compile(rb"VALUE (\S+) (\d+) (\d+)(?: (\d+))?\r\n")


def parse_retrieval(buf: bytes, pos: int = 0):
    """Parses one get/gets reply starting at pos: returns (values, end_line,
    next_pos) where values = [(key, flags, value, cas|None)] and end_line is
    b"END" or the error line; or None when the reply is not complete yet."""
    values = []
    while True:
        nl = buf.find(b"\r\n", pos)
        if nl < 0:
            return None
        if buf.startswith(b"VALUE ", pos):
            m = _VALUE_HEAD.match(buf, pos)
            if not m:
                raise AssertionError(f"bad VALUE line {buf[pos:nl + 2][:200]!r}")
            n = int(m.group(3))
            start = m.end()
            if len(buf) < start + n + 2:
                return None
            if buf[start + n:start + n + 2] != b"\r\n":
                raise AssertionError(f"value of {m.group(1)!r} not followed by CRLF: {buf[start + n:start + n + 20]!r}")
            cas = int(m.group(4)) if m.group(4) is not None else None
            values.append((m.group(1).decode("latin-1"), int(m.group(2)), buf[start:start + n], cas))
            pos = start + n + 2
            continue
        return values, buf[pos:nl], nl + 2


def count_retrievals(buf: bytes) -> int:
    pos, n = 0, 0
    while True:
        r = parse_retrieval(buf, pos)
        if r is None:
            return n
        n += 1
        pos = r[2]


def read_retrievals(conn: RawConn, count: int, timeout: float = 20.0):
    """Reads `count` complete get/gets replies: list of (values, end_line)."""
    data = conn.read_until(lambda b: count_retrievals(bytes(b)) >= count, quiet=timeout, timeout=timeout)
    out, pos = [], 0
    for _ in range(count):
        r = parse_retrieval(data, pos)
        if r is None:
            raise AssertionError(f"only {len(out)} of {count} replies arrived (eof={conn.eof}); "
                                 f"tail {data[pos:pos + 300]!r}")
        out.append((r[0], r[1]))
        pos = r[2]
    if pos != len(data):
        raise AssertionError(f"{len(data) - pos} unexpected bytes after {count} replies: {data[pos:pos + 300]!r}")
    return out


def read_lines(conn: RawConn, count: int, timeout: float = 20.0) -> list[bytes]:
    """Reads exactly `count` CRLF-terminated lines."""
    data = conn.read_until(lambda b: b.count(b"\r\n") >= count, quiet=timeout, timeout=timeout)
    lines = data.split(b"\r\n")
    if len(lines) - 1 < count:
        raise AssertionError(f"only {len(lines) - 1} of {count} reply lines arrived (eof={conn.eof}): {data[-300:]!r}")
    if len(lines) - 1 > count or lines[-1]:
        raise AssertionError(f"more than {count} reply lines: {data[-300:]!r}")
    return lines[:-1]


def set_many(conn: RawConn, items, flags: int = 0, exptime: int = 0, batch: int = 500,
             timeout: float = 20.0) -> list[bytes]:
    """Pipelined `set` of (key, value) pairs; returns the reply lines."""
    items = list(items)
    replies: list[bytes] = []
    for s in range(0, len(items), batch):
        chunk = items[s:s + batch]
        payload = b"".join(b"set %s %d %d %d\r\n%s\r\n" % (k.encode(), flags, exptime, len(v), v)
                           for k, v in chunk)
        conn.send(payload)
        replies += read_lines(conn, len(chunk), timeout)
    return replies


def get_each(conn: RawConn, keys: list[str], cmd: str = "get", batch: int = 500,
             timeout: float = 20.0) -> list[tuple[list, bytes]]:
    """Pipelined single-key gets; one (values, end_line) per key."""
    out = []
    for s in range(0, len(keys), batch):
        chunk = keys[s:s + batch]
        conn.send(b"".join(b"%s %s\r\n" % (cmd.encode(), k.encode()) for k in chunk))
        out += read_retrievals(conn, len(chunk), timeout)
    return out


def multi_get(conn: RawConn, keys: list[str], cmd: str = "get", batch: int = 400,
              timeout: float = 20.0) -> dict[str, bytes]:
    """key -> value for the keys found, asked `batch` keys per command."""
    found: dict[str, bytes] = {}
    for s in range(0, len(keys), batch):
        chunk = keys[s:s + batch]
        conn.send(cmd.encode() + b" " + " ".join(chunk).encode() + b"\r\n")
        [(values, end)] = read_retrievals(conn, 1, timeout)
        if end != b"END":
            raise AssertionError(f"multi-get of {len(chunk)} keys ended with {end!r}")
        for k, _f, v, _c in values:
            found[k] = v
    return found


# Commands sent to keys whose placement just changed (scale-out, or a node
# that came back empty), each to its own key holding b"10", each followed by
# what shows its effect; compared with a memcached holding the same data.
KEY_COMMANDS = [
    "delete {k}\r\nget {k}\r\n",
    "incr {k} 5\r\nget {k}\r\n",
    "decr {k} 1\r\nget {k}\r\n",
    "append {k} 0 0 1\r\nx\r\nget {k}\r\n",
    "prepend {k} 0 0 1\r\nx\r\nget {k}\r\n",
    "touch {k} 100\r\nmg {k} v t\r\n",
    "replace {k} 0 0 1\r\nR\r\nget {k}\r\n",
    "add {k} 0 0 1\r\nA\r\nget {k}\r\n",
    "gat 100 {k}\r\n",
    "gets {k}\r\n",
    "mg {k} v\r\n",
    "md {k}\r\nmg {k} v\r\n",
    "ma {k}\r\nmg {k} v\r\n",
    "ms {k} 1 MA\r\nz\r\nmg {k} v\r\n",
    "get {k} {k}2\r\n",
]


def compare_key_commands(proxy_conn: RawConn, ref_conn: RawConn, keys: list[str]) -> list[str]:
    """Runs KEY_COMMANDS (one key each) on both connections; returns the
    differences, CAS uniques masked."""
    diffs = []
    for cmd, k in zip(KEY_COMMANDS, keys):
        payload = cmd.format(k=k).encode() + b"mn\r\n"
        out = []
        for conn in (ref_conn, proxy_conn):
            conn.send(payload)
            out.append(conn.read_until(lambda b: b.endswith(b"MN\r\n"), quiet=5, timeout=5))
        a, b = (re.sub(rb"^(VALUE \S+ \d+ \d+) \d+\r$", rb"\1 <cas>\r", x, flags=re.M) for x in out)
        a, b = (re.sub(rb" t(99|100)\r\n", b" t100\r\n", x) for x in (a, b))
        if a != b:
            diffs.append(f"sent {payload!r}: memcached {a!r}, proxy {b!r}")
    return diffs
