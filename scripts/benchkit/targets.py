"""The servers a comparison measures: started on 127.0.0.1, killed by pid."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time

from .hostload import CLOCK_TICKS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, ".build", "release")
MEMCACHED = shutil.which("memcached") or "/usr/bin/memcached"
NUTCRACKER = shutil.which("nutcracker") or "/usr/sbin/nutcracker"


def read_cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class Process:
    """A server process we started; killed by PID at the end."""

    def __init__(self, argv: list[str], cpu: str | None):
        if cpu is not None:
            argv = ["taskset", "-c", cpu] + argv
        env = dict(os.environ, SWIFT_BACKTRACE="enable=no")
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        self.argv = argv

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return read_cpu_seconds(self.pid)

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def wait_until_serving(port: int, timeout: float = 10.0, tls_ca: str | None = None):
    """Until `version` is answered on the port (over TLS, checked against
    `tls_ca`, when given)."""
    context = ssl.create_default_context(cafile=tls_ca) if tls_ca else None
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as raw:
                s = context.wrap_socket(raw, server_hostname="127.0.0.1") if context else raw
                s.sendall(b"version\r\n")
                if s.recv(100).startswith(b"VERSION"):
                    return
        except (OSError, ssl.SSLError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nothing serves on 127.0.0.1:{port}")


class Tier:
    """One target: the processes that serve it and the port clients use
    (over TLS, with the CA in `tls_ca`, when set)."""

    def __init__(self, name: str, port: int, processes: list[Process], front: Process | None = None,
                 tls_ca: str | None = None):
        self.name, self.port, self.processes, self.front, self.tls_ca = name, port, processes, front, tls_ca

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def cpu_seconds(self) -> float:
        return sum(p.cpu_seconds() for p in self.processes)

    def front_cpu_seconds(self) -> float:
        return self.front.cpu_seconds() if self.front else self.cpu_seconds()

    def stop(self):
        for p in self.processes:
            p.stop()


def memcached_argv(port: int, threads: int, memory: int) -> list[str]:
    return [MEMCACHED, "-p", str(port), "-l", "127.0.0.1", "-U", "0", "-u", "root", "-t", str(threads),
            "-m", str(memory), "-c", "4096"]


def node_argv(port: int, threads: int, memory: int) -> list[str]:
    return [os.path.join(BIN, "memcluster-node"), "-p", str(port), "-l", "127.0.0.1", "-t", str(threads),
            "-m", str(memory), "-c", "4096"]


def make_test_ca(directory: str) -> str:
    """A CA and a server certificate for 127.0.0.1 (scripts/make-test-ca); returns the directory."""
    if not os.path.exists(os.path.join(directory, "ca.crt")):
        subprocess.run([os.path.join(ROOT, "scripts", "make-test-ca"), directory], check=True, capture_output=True)
    return directory


def tls_server_flags(ca_dir: str) -> list[str]:
    """memcached's -Z flags, for memcached and memcluster-node alike."""
    return ["-Z", "-o", f"ssl_chain_cert={ca_dir}/server.crt,ssl_key={ca_dir}/server.key"]


def start_single(name: str, argv: list[str], port: int, cpu: str = "0", tls_ca_dir: str | None = None) -> Tier:
    """One server; with `tls_ca_dir` it serves TLS only (-Z), with that CA's certificate."""
    if tls_ca_dir:
        argv = argv + tls_server_flags(tls_ca_dir)
    tls_ca = f"{tls_ca_dir}/ca.crt" if tls_ca_dir else None
    process = Process(argv, cpu=cpu)
    try:
        wait_until_serving(port, tls_ca=tls_ca)
    except Exception:
        process.stop()
        raise
    return Tier(name, port, [process], tls_ca=tls_ca)


def _start_backends(argvs: list[list[str]], ports: list[int], tls_ca: str | None = None) -> list[Process]:
    backends = [Process(argv, cpu="0") for argv in argvs]
    try:
        for port in ports:
            wait_until_serving(port, tls_ca=tls_ca)
    except Exception:
        for b in backends:
            b.stop()
        raise
    return backends


def start_twemproxy(port: int, workdir: str, memory: int) -> Tier:
    """nutcracker (md5, ketama) in front of 3 memcached -t 1 on ports port+1..port+3."""
    ports = [port + 1 + i for i in range(3)]
    backends = _start_backends([memcached_argv(p, 1, memory) for p in ports], ports)
    config = os.path.join(workdir, f"nutcracker-{port}.yml")
    with open(config, "w") as f:
        f.write("\n".join(["pool:", f"  listen: 127.0.0.1:{port}", "  hash: md5", "  distribution: ketama",
                           "  timeout: 1000", "  servers:"] + [f"   - 127.0.0.1:{p}:1" for p in ports]) + "\n")
    front = Process([NUTCRACKER, "-c", config, "-o", os.path.join(workdir, f"nutcracker-{port}.log")], cpu=None)
    tier = Tier("twemproxy+3 memcached", port, backends + [front], front)
    try:
        wait_until_serving(port)
    except Exception:
        tier.stop()
        raise
    return tier


def start_proxy(port: int, replicas: int, memory: int, threads: int,
                tls_ca_dir: str | None = None, workdir: str | None = None) -> Tier:
    """memcluster-proxy in front of 3 memcluster-node -t 1 on ports port+1..port+3;
    with `tls_ca_dir`, TLS on both sides (`tls:` for clients, nodes with -Z
    reached with `node_tls:`), which takes a configuration file in `workdir`."""
    ports = [port + 1 + i for i in range(3)]
    node_flags = tls_server_flags(tls_ca_dir) if tls_ca_dir else []
    tls_ca = f"{tls_ca_dir}/ca.crt" if tls_ca_dir else None
    backends = _start_backends([node_argv(p, 1, memory) + node_flags for p in ports], ports, tls_ca=tls_ca)
    argv = [os.path.join(BIN, "memcluster-proxy")]
    if tls_ca_dir:
        config = os.path.join(workdir, f"proxy-tls-{port}.yaml")
        with open(config, "w") as f:
            f.write("\n".join([f"listen: 127.0.0.1:{port}", f"replicas: {replicas}", f"threads: {threads}",
                               f"tls:\n  cert: {tls_ca_dir}/server.crt\n  key: {tls_ca_dir}/server.key",
                               f"node_tls:\n  ca: {tls_ca}", "nodes:"] + [f"  - 127.0.0.1:{p}" for p in ports]) + "\n")
        argv += ["--config", config]
    else:
        argv += ["--listen", f"127.0.0.1:{port}", "--replicas", str(replicas), "--threads", str(threads)]
        for p in ports:
            argv += ["--node", f"127.0.0.1:{p}"]
    front = Process(argv, cpu=None)
    tier = Tier(f"memcluster-proxy r{replicas}+3 nodes", port, backends + [front], front, tls_ca=tls_ca)
    try:
        wait_until_serving(port, tls_ca=tls_ca)
    except Exception:
        tier.stop()
        raise
    return tier
