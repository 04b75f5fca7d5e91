"""DNS servers for the proxy's discovery tests: a real dnsmasq answering from
a hosts file the test rewrites (and from --srv-host records), and a fake
server that answers every question with garbage.

dnsmasq runs in the foreground on 127.0.0.1 on a free port, reads nothing of
the machine's own configuration (`-C /dev/null`, `--no-resolv`,
`--no-hosts`), forwards nothing, and is killed by PID. It re-reads the hosts
file on SIGHUP (dnsmasq(8): "When it receives a SIGHUP, dnsmasq clears its
cache and then re-loads ... any file given by --addn-hosts"); `--srv-host`
records are fixed at start, so changing them restarts it on the same port.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

import harness
import proxy_harness as ph
from harness import HOST


def dnsmasq_binary() -> str:
    path = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not os.access(path, os.X_OK):
        raise RuntimeError("dnsmasq is not installed (scripts/test installs it)")
    return path


# --------------------------------------------------------------------------
# A minimal client, to see what the server answers
# --------------------------------------------------------------------------

TYPE_A, TYPE_AAAA, TYPE_SRV = 1, 28, 33


def _encode_name(name: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode() for label in name.strip(".").split(".")) + b"\0"


def query_message(name: str, qtype: int = TYPE_A, qid: int | None = None) -> bytes:
    qid = random.randrange(65536) if qid is None else qid
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + _encode_name(name) + struct.pack(">HH", qtype, 1)


def _skip_name(msg: bytes, pos: int) -> int:
    while True:
        length = msg[pos]
        if length & 0xC0 == 0xC0:
            return pos + 2
        if length == 0:
            return pos + 1
        pos += 1 + length


def query(port: int, name: str, qtype: int = TYPE_A, timeout: float = 0.5) -> tuple[int, list] | None:
    """Asks 127.0.0.1:port; (rcode, [answer data]) or None on no answer.
    A data: the dotted address; SRV: (port, target as raw bytes); others: bytes."""
    msg = query_message(name, qtype)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(msg, (HOST, port))
            reply, _ = s.recvfrom(65535)
        except OSError:
            return None
    if len(reply) < 12 or reply[:2] != msg[:2]:
        return None
    flags, qd, an = struct.unpack(">HHH", reply[2:8])
    pos = 12
    for _ in range(qd):
        pos = _skip_name(reply, pos) + 4
    out = []
    for _ in range(an):
        pos = _skip_name(reply, pos)
        rtype, _rclass, _ttl, length = struct.unpack(">HHIH", reply[pos:pos + 10])
        pos += 10
        data = reply[pos:pos + length]
        pos += length
        if rtype == TYPE_A:
            out.append(socket.inet_ntoa(data))
        elif rtype == TYPE_SRV:
            out.append((struct.unpack(">H", data[4:6])[0], data[6:]))
        else:
            out.append(data)
    return flags & 0xF, out


# --------------------------------------------------------------------------
# dnsmasq
# --------------------------------------------------------------------------

class Dnsmasq:
    """dnsmasq on 127.0.0.1:`port`, answering A records from `hosts`
    (name -> [addresses]) and SRV records from `srv` ([(name, target, port)]);
    inside network namespace `netns` when given (then on that namespace's
    loopback, port 53 for a resolv.conf to name it)."""

    def __init__(self, hosts: dict[str, list[str]], srv=(), port: int | None = None, netns: str | None = None):
        # dnsmasq drops root for `nobody`, who must still read the hosts file
        # on SIGHUP: a directory of its own, readable by all.
        self.tmpdir = tempfile.mkdtemp(prefix="mcdns-")
        os.chmod(self.tmpdir, 0o755)
        self.hosts_path = os.path.join(self.tmpdir, "hosts")
        self.log_path = os.path.join(self.tmpdir, "dnsmasq.log")
        self.srv = list(srv)
        self.proc: subprocess.Popen | None = None
        self.port = port
        self.netns = netns
        self.write_hosts(hosts)
        self.start()

    @property
    def server(self) -> str:
        return f"{HOST}:{self.port}"

    def write_hosts(self, hosts: dict[str, list[str]]) -> None:
        tmp = self.hosts_path + ".tmp"
        with open(tmp, "w") as f:
            for name, addresses in hosts.items():
                for address in addresses:
                    f.write(f"{address} {name}\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.hosts_path)

    def start(self, attempts: int = 5) -> None:
        last = ""
        for _ in range(attempts if self.port is None else 20):
            port = self.port or harness.free_port()
            inside = ["ip", "netns", "exec", self.netns] if self.netns else []
            argv = inside + [dnsmasq_binary(), "--no-daemon", "-C", "/dev/null", "--no-resolv", "--no-hosts",
                             f"--addn-hosts={self.hosts_path}", f"--listen-address={HOST}", "--bind-interfaces",
                             f"--port={port}", "--pid-file=", "--no-negcache", "--log-queries", "--log-facility=-",
                             *[f"--srv-host={name},{target},{p}" for name, target, p in self.srv]]
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                             close_fds=True)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self.ask(port, "ready.invalid", timeout=0.1) is not None:
                    self.port = port
                    return
                time.sleep(0.02)
            last = self.log()
            self._kill()
            time.sleep(0.1)
        raise RuntimeError(f"dnsmasq did not start: {last}")

    def reload(self, hosts: dict[str, list[str]], name: str, expect: list[str], timeout: float = 5.0) -> None:
        """Writes `hosts`, sends SIGHUP, and returns once `name` resolves to
        exactly `expect` (sorted), so a test times the proxy, not dnsmasq."""
        self.write_hosts(hosts)
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while True:
            answer = self.ask(self.port, name)
            if answer is not None and sorted(a for a in answer[1] if isinstance(a, str)) == sorted(expect):
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"dnsmasq still answers {answer} for {name}, not {expect}: {self.log()}")
            time.sleep(0.02)

    def ask(self, port: int, name: str, qtype: int = TYPE_A, timeout: float = 0.5):
        """`query` from where dnsmasq listens (its namespace)."""
        return ph.run_in_netns(self.netns, lambda: query(port, name, qtype, timeout))

    def restart(self, srv=None) -> None:
        """Stops and starts again on the same port (new --srv-host records)."""
        if srv is not None:
            self.srv = list(srv)
        self._kill()
        self.start()

    def kill(self) -> None:
        """Stops answering: SIGKILL, waited for."""
        self._kill()

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def log(self, limit: int = 4000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-limit:]
        except OSError:
            return ""

    def stop(self) -> None:
        self._kill()
        shutil.rmtree(self.tmpdir, ignore_errors=True)


# --------------------------------------------------------------------------
# A server that answers with garbage
# --------------------------------------------------------------------------

class GarbageDNSServer:
    """Answers every UDP question on 127.0.0.1:`port` with one of a rotation
    of malformed answers carrying the question's id (so the proxy cannot
    drop them on the id alone): pointer loops, truncated headers, huge
    counts, lengths past the end, random bytes, and a truncated (TC) answer
    whose TCP retry meets a length field promising more than is sent, then a
    close. Counts what it received."""

    def __init__(self):
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for _ in range(20):
            port = harness.free_port()
            try:
                self.tcp.bind((HOST, port))
                self.udp.bind((HOST, port))
                break
            except OSError:
                self.tcp.close()
                self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        else:
            raise RuntimeError("no free port for the garbage DNS server")
        self.port = port
        self.tcp.listen(16)
        self.udp.settimeout(0.2)
        self.tcp.settimeout(0.2)
        self.datagrams = 0
        self.connections = 0
        self.running = True
        self.rng = random.Random(0xBAD)
        self.threads = [threading.Thread(target=self._serve_udp, daemon=True),
                        threading.Thread(target=self._serve_tcp, daemon=True)]
        for t in self.threads:
            t.start()

    @property
    def server(self) -> str:
        return f"{HOST}:{self.port}"

    def _garbage(self, q: bytes) -> bytes:
        qid = q[:2]
        question = q[12:]
        head = lambda flags, qd, an, ns=0, ar=0: qid + struct.pack(">HHHHH", flags, qd, an, ns, ar)  # noqa: E731
        kinds = [
            head(0x8180, 1, 1) + b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 0, 4) + b"\x0a\0\0\x01",  # question name points at itself
            head(0x8180, 1, 0xFFFF) + question,                                                      # 65,535 answers, none there
            head(0x8180, 1, 1) + question + b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 0, 60000) + b"\x0a",  # length past the end
            qid + b"\x81",                                                                           # a cut header
            head(0x8180, 1, 1) + question + b"\x40\x01\x00",                                         # an unknown label type
            head(0x8180, 1, 1) + question + b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 0, 5) + b"\x0a\0\0\x01\x02",  # A of 5 bytes
            qid + bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(0, 600))),         # noise
            head(0x8380, 1, 0) + question,                                                           # TC: ask over TCP
        ]
        return kinds[self.datagrams % len(kinds)]

    def _serve_udp(self):
        while self.running:
            try:
                q, peer = self.udp.recvfrom(4096)
            except OSError:
                continue
            if len(q) < 12:
                continue
            reply = self._garbage(q)
            self.datagrams += 1
            try:
                self.udp.sendto(reply, peer)
            except OSError:
                pass

    def _serve_tcp(self):
        while self.running:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                continue
            self.connections += 1
            with conn:
                try:
                    conn.settimeout(1)
                    conn.recv(4096)
                    conn.sendall(b"\xff\xff" + b"\x00" * 100)   # promises 65,535 bytes, sends 100, closes
                except OSError:
                    pass

    def stop(self):
        self.running = False
        for t in self.threads:
            t.join(timeout=2)
        self.udp.close()
        self.tcp.close()
