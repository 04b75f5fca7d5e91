"""The servers a comparison measures: started on 127.0.0.1, killed by pid."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, ".build", "release")
MEMCACHED = shutil.which("memcached") or "/usr/bin/memcached"
NUTCRACKER = shutil.which("nutcracker") or "/usr/sbin/nutcracker"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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


def wait_until_serving(port: int, timeout: float = 10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"version\r\n")
                if s.recv(100).startswith(b"VERSION"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nothing serves on 127.0.0.1:{port}")


class Tier:
    """One target: the processes that serve it and the port clients use."""

    def __init__(self, name: str, port: int, processes: list[Process], front: Process | None = None):
        self.name, self.port, self.processes, self.front = name, port, processes, front

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


def start_single(name: str, argv: list[str], port: int, cpu: str = "0") -> Tier:
    process = Process(argv, cpu=cpu)
    try:
        wait_until_serving(port)
    except Exception:
        process.stop()
        raise
    return Tier(name, port, [process])


def _start_backends(argvs: list[list[str]], ports: list[int]) -> list[Process]:
    backends = [Process(argv, cpu="0") for argv in argvs]
    try:
        for port in ports:
            wait_until_serving(port)
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


def start_proxy(port: int, replicas: int, memory: int, threads: int, name: str | None = None) -> Tier:
    """memcluster-proxy in front of 3 memcluster-node -t 1 on ports port+1..port+3."""
    ports = [port + 1 + i for i in range(3)]
    backends = _start_backends([node_argv(p, 1, memory) for p in ports], ports)
    argv = [os.path.join(BIN, "memcluster-proxy"), "--listen", f"127.0.0.1:{port}", "--replicas", str(replicas),
            "--threads", str(threads)]
    for p in ports:
        argv += ["--node", f"127.0.0.1:{p}"]
    front = Process(argv, cpu=None)
    tier = Tier(name or f"memcluster-proxy r{replicas}+3 nodes", port, backends + [front], front)
    try:
        wait_until_serving(port)
    except Exception:
        tier.stop()
        raise
    return tier
