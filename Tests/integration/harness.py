"""Black-box helpers for the integration tests: start a memcached-compatible
server on a free loopback port, talk to it over raw sockets, read /proc.

Everything here is bounded: every wait has a timeout, every read a byte cap,
and every process started is killed by PID (see Server.stop).
Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import os
import random
import re
import select
import shlex
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

HOST = "127.0.0.1"
REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_NODE = os.path.join(REPO_ROOT, ".build", "release", "memcluster-node")
MEMCACHED = os.environ.get("MEMCACHED_BIN", "/usr/bin/memcached")

# Upper bounds used everywhere unless a caller asks for less.
START_TIMEOUT = 10.0          # seconds for a server to answer `version`
READ_CAP = 64 * 1024 * 1024   # bytes kept by one read loop


# --------------------------------------------------------------------------
# Which server is under test
# --------------------------------------------------------------------------

def target_name() -> str:
    """`node` (default) or `memcached`, from MEMCLUSTER_TARGET."""
    t = os.environ.get("MEMCLUSTER_TARGET", "node").strip().lower() or "node"
    if t not in ("node", "memcached"):
        raise ValueError(f"MEMCLUSTER_TARGET must be 'node' or 'memcached', not {t!r}")
    return t


def target_binary() -> str:
    if target_name() == "memcached":
        return MEMCACHED
    return os.environ.get("MEMCLUSTER_NODE", DEFAULT_NODE)


def reference_binary() -> str:
    return MEMCACHED


# --------------------------------------------------------------------------
# Ports and processes
# --------------------------------------------------------------------------

def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _user_flags() -> list[str]:
    # memcached refuses to run as root without -u; the node is a drop-in and
    # takes the same flag.
    return ["-u", "nobody"] if os.geteuid() == 0 else []


@dataclass
class Server:
    binary: str
    flags: list[str]
    port: int
    proc: subprocess.Popen
    log_path: str
    host: str = HOST
    argv: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def addr(self) -> tuple[str, int]:
        return (self.host, self.port)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self, limit: int = 4000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
        except OSError:
            return ""
        text = data.decode("utf-8", "replace")
        return text[-limit:]

    def __iter__(self):
        """Unpacks as (host, port, process)."""
        return iter((self.host, self.port, self.proc))

    def describe(self) -> str:
        return f"{shlex.join(self.argv)} (pid {self.pid})"

    def stop(self, graceful: float = 0.0) -> None:
        """Kill the process by PID. With graceful > 0, SIGTERM first and
        SIGKILL after that many seconds; by default SIGKILL at once
        (memcached takes ~1 s to exit on SIGTERM, too slow for hundreds of
        short-lived servers)."""
        if self.proc.poll() is None:
            try:
                if graceful > 0:
                    self.proc.send_signal(signal.SIGTERM)
                    try:
                        self.proc.wait(timeout=graceful)
                    except subprocess.TimeoutExpired:
                        self.proc.kill()
                else:
                    self.proc.kill()
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.unlink(self.log_path)
        except OSError:
            pass

    def rss_kib(self) -> int:
        return proc_status_kib(self.pid, "VmRSS")


def start_server(binary: str, flags: list[str] | tuple[str, ...] = (),
                 timeout: float = START_TIMEOUT, attempts: int = 5) -> Server:
    """Start `binary` on a free loopback port with `flags` and wait until it
    answers `version`. Retries with another port if the port was taken."""
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        raise FileNotFoundError(f"server binary not found or not executable: {binary}")
    last_err = ""
    for _ in range(attempts):
        port = free_port()
        argv = [binary, "-l", HOST, "-p", str(port), "-U", "0", *_user_flags(), *flags]
        fd, log_path = tempfile.mkstemp(prefix="mcserver-", suffix=".log")
        with os.fdopen(fd, "wb") as logf:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                    stderr=subprocess.STDOUT, close_fds=True)
        srv = Server(binary, list(flags), port, proc, log_path, argv=argv)
        try:
            if _wait_ready(srv, timeout):
                return srv
            last_err = f"{srv.describe()} did not answer `version` within {timeout}s"
        except _Exited:
            last_err = f"{srv.describe()} exited with {proc.returncode}: {srv.log()}"
        except _PortTaken:
            last_err = f"port {port} answered for another process than {srv.describe()}"
            srv.stop()
            continue
        log = srv.log()
        srv.stop()
        if "Address already in use" not in log and "bind" not in log.lower():
            break
    raise RuntimeError(last_err)


def spawn_listening(argv: list[str], port: int, timeout: float = START_TIMEOUT, prefix: str = "mcproc-") -> Server:
    """Starts argv and waits until 127.0.0.1:`port` accepts connections (for
    servers that do not answer a plain `version` there: TLS, -Y). Raises
    RuntimeError with the log when it exits or never listens."""
    fd, log_path = tempfile.mkstemp(prefix=prefix, suffix=".log")
    with os.fdopen(fd, "wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, close_fds=True)
    srv = Server(argv[0], list(argv[1:]), port, proc, log_path, argv=argv)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not srv.alive():
            raise RuntimeError(f"{srv.describe()} exited with {proc.returncode}: {srv.log()}")
        try:
            socket.create_connection(srv.addr, timeout=1).close()
            return srv
        except OSError:
            time.sleep(0.05)
    log = srv.log()
    srv.stop()
    raise RuntimeError(f"{srv.describe()} did not listen within {timeout} s: {log}")


class _Exited(Exception):
    pass


def _wait_ready(srv: Server, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not srv.alive():
            raise _Exited()
        try:
            if _ask(srv.addr, b"version\r\n", b"\n", timeout=0.5).startswith(b"VERSION "):
                if _answering_pid(srv.addr) != srv.pid:
                    # Another process took the port between free_port() and
                    # our bind; ours is failing (or has failed) to listen.
                    raise _PortTaken()
                return True
        except OSError:
            pass
        time.sleep(0.02)
    return False


class _PortTaken(Exception):
    pass


def _ask(addr, request: bytes, end: bytes, timeout: float, limit: int = 65536) -> bytes:
    """One request on a fresh connection; the reply up to `end` (or EOF)."""
    with socket.create_connection(addr, timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(request)
        buf = b""
        while not buf.endswith(end) and len(buf) < limit:
            chunk = s.recv(limit)
            if not chunk:
                break
            buf += chunk
    return buf


def _answering_pid(addr) -> int | None:
    """The `pid` the server listening at `addr` reports in `stats`."""
    for line in _ask(addr, b"stats\r\n", b"END\r\n", timeout=2).split(b"\r\n"):
        if line.startswith(b"STAT pid "):
            return int(line.split()[2])
    return None


def cpu_ticks(pid: int) -> int:
    """User plus system CPU time of a process so far, in clock ticks (1/100 s here)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def proc_status_kib(pid: int, field_name: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise KeyError(field_name)


# --------------------------------------------------------------------------
# Raw connections
# --------------------------------------------------------------------------

class RawConn:
    """A raw TCP connection. `send` can split the bytes into chunks (with a
    small pause so that they arrive as separate segments); the read helpers
    stop at a terminator, at EOF, after a quiet period, or at a deadline."""

    def __init__(self, addr: tuple[str, int], timeout: float = 5.0):
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)   # every wait below goes through select
        self.buf = bytearray()
        self.eof = False          # peer closed (orderly or reset)
        self.reset = False        # the close was a reset / send failed
        self.send_failed = False

    # -- sending ----------------------------------------------------------
    def send(self, data: bytes, split=None, pause: float = 0.002) -> None:
        """split: None = one sendall; int n = chunks of n bytes;
        list of ints = cut at these offsets."""
        for chunk in split_bytes(data, split):
            if not self._sendall(chunk):
                return
            if split is not None and pause:
                time.sleep(pause)
                self._drain_nonblocking()

    def _sendall(self, data: bytes) -> bool:
        view = memoryview(data)
        deadline = time.monotonic() + 30
        while view:
            if time.monotonic() > deadline:
                raise TimeoutError("send blocked for 30 s")
            try:
                r, w, _ = select.select([self.sock], [self.sock], [], 1.0)
                if r:
                    self._drain_nonblocking()   # keep the peer from blocking on us
                if not w:
                    continue
                n = self.sock.send(view[:65536])
                view = view[n:]
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                self.send_failed = True
                return False
        return True

    def _drain_nonblocking(self) -> None:
        while not self.eof:
            try:
                chunk = self.sock.recv(262144)
            except BlockingIOError:
                return
            except ConnectionResetError:
                self.eof = self.reset = True
                return
            if not chunk:
                self.eof = True
                return
            self._keep(chunk)

    def _keep(self, chunk: bytes) -> None:
        room = READ_CAP - len(self.buf)
        if room > 0:
            self.buf += chunk[:room]

    # -- reading ----------------------------------------------------------
    def _fill(self, done=None, quiet: float = 0.3, timeout: float = 10.0) -> None:
        """Receive into self.buf until done(buf) is true, EOF, `quiet`
        seconds without new data, or `timeout` seconds in all."""
        if isinstance(done, (bytes, bytearray)):
            term = bytes(done)
            done = lambda b, t=term: b.endswith(t)  # noqa: E731
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while not self.eof:
            if done is not None and done(self.buf):
                break
            now = time.monotonic()
            if now >= deadline or now - last >= quiet:
                break
            wait = max(0.0, min(quiet - (now - last), deadline - now, 0.05))
            r, _, _ = select.select([self.sock], [], [], wait)
            if not r:
                continue
            try:
                chunk = self.sock.recv(262144)
            except ConnectionResetError:
                self.eof = self.reset = True
                break
            except BlockingIOError:
                continue
            if not chunk:
                self.eof = True
                break
            self._keep(chunk)
            last = time.monotonic()

    def read_until(self, done=None, quiet: float = 0.3, timeout: float = 10.0) -> bytes:
        """Read until done (a bytes terminator the buffer must end with, or
        a predicate on the buffer), EOF, `quiet` seconds without data, or
        `timeout`. Returns and consumes everything read so far."""
        self._fill(done, quiet, timeout)
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def read_line(self, timeout: float = 5.0) -> bytes:
        """Read one `\\n`-terminated line (bounded); b"" on EOF/timeout."""
        self._fill(lambda b: b"\n" in b, quiet=timeout, timeout=timeout)
        i = self.buf.find(b"\n")
        if i < 0:
            out = bytes(self.buf)
            self.buf.clear()
            return out
        out = bytes(self.buf[: i + 1])
        del self.buf[: i + 1]
        return out

    def request(self, data: bytes, done=b"\r\n", timeout: float = 5.0) -> bytes:
        self.send(data)
        return self.read_until(done, quiet=timeout, timeout=timeout)

    def wait_closed(self, timeout: float = 3.0) -> bool:
        self.read_until(None, quiet=timeout, timeout=timeout)
        return self.eof

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def split_bytes(data: bytes, split) -> list[bytes]:
    if split is None or not data:
        return [data]
    if isinstance(split, int):
        n = max(1, split)
        return [data[i:i + n] for i in range(0, len(data), n)]
    cuts = sorted({c for c in split if 0 < c < len(data)})
    out, prev = [], 0
    for c in cuts:
        out.append(data[prev:c])
        prev = c
    out.append(data[prev:])
    return out


# --------------------------------------------------------------------------
# Small text-protocol client for tests that need one (stats, setup)
# --------------------------------------------------------------------------

END_RE = re.compile(rb"(?:^|\n)(END|ERROR|CLIENT_ERROR[^\n]*|SERVER_ERROR[^\n]*)\r\n$")


def _ends_block(buf: bytes) -> bool:
    return END_RE.search(buf) is not None


class TextClient:
    def __init__(self, addr: tuple[str, int], timeout: float = 5.0):
        self.conn = RawConn(addr, timeout=timeout)
        self.timeout = timeout

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def line(self, cmd: bytes | str) -> bytes:
        """Send one command, return its one-line reply without CRLF."""
        if isinstance(cmd, str):
            cmd = cmd.encode()
        return self.conn.request(cmd + b"\r\n", timeout=self.timeout).rstrip(b"\r\n")

    def block(self, cmd: bytes | str) -> bytes:
        """Send a command whose reply ends with END (or an error line)."""
        if isinstance(cmd, str):
            cmd = cmd.encode()
        self.conn.send(cmd + b"\r\n")
        return self.conn.read_until(_ends_block, quiet=self.timeout, timeout=self.timeout)

    def set(self, key: str, value: bytes, flags: int = 0, exptime: int = 0) -> bytes:
        return self.conn.request(
            b"set %s %d %d %d\r\n%s\r\n" % (key.encode(), flags, exptime, len(value), value),
            timeout=self.timeout).rstrip(b"\r\n")

    def get(self, key: str) -> bytes | None:
        r = self.block(f"get {key}")
        if r == b"END\r\n":
            return None
        m = re.match(rb"VALUE \S+ \d+ (\d+)\r\n", r)
        if not m:
            raise AssertionError(f"unexpected get reply {r[:200]!r}")
        n = int(m.group(1))
        return r[m.end():m.end() + n]

    def stats(self, arg: str = "") -> dict[str, str]:
        r = self.block(("stats " + arg).strip())
        out = {}
        for ln in r.split(b"\r\n"):
            if ln.startswith(b"STAT "):
                parts = ln.decode("latin-1").split(" ", 2)
                out[parts[1]] = parts[2] if len(parts) > 2 else ""
        if not r.endswith(b"END\r\n"):
            raise AssertionError(f"stats {arg!r} reply not terminated by END: {r[-200:]!r}")
        return out


def random_bytes(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)
