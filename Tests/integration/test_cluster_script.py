"""scripts/cluster end to end, as a user runs it: start, status, add-node,
stop, and the default run with Ctrl-C, each in a state directory of its own
(MEMCLUSTER_STATE_DIR) on a free port range (MEMCLUSTER_BASE_PORT), so the
user's own out/cluster and ports 22120-22125 are never touched.

The script's `swift build -c release` runs a stand-in `swift` put first on
PATH: these tests use the release binaries scripts/test has just built,
without a second build (the one test of a failing build has a stand-in that
prints a real compiler error). Every process the script starts is killed by
PID at teardown, whatever the test did.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time

import pytest

import harness

SCRIPT = os.path.join(harness.REPO_ROOT, "scripts", "cluster")
BIN = os.path.join(harness.REPO_ROOT, ".build", "release")

# What swift build printed for a file with two errors (the script once showed
# only its last line, "10 |").
FAILED_BUILD = """\
Building for production...
[5/6] Compiling memcluster_node main.swift
/src/Sources/memcluster-node/main.swift:8:19: error: cannot convert value of type 'String' to specified type 'Int'
 6 | exit(NodeMain.run(arguments: CommandLine.arguments))
 7 |
 8 | let broken: Int = "text"
   |                   `- error: cannot convert value of type 'String' to specified type 'Int'
 9 | undefinedThing()
10 |

/src/Sources/memcluster-node/main.swift:9:1: error: cannot find 'undefinedThing' in scope
 7 |
 8 | let broken: Int = "text"
 9 | undefinedThing()
   | `- error: cannot find 'undefinedThing' in scope
10 |
"""


def free_base() -> int:
    """A base port N with N..N+5 free on 127.0.0.1 a moment ago."""
    for _ in range(50):
        base = random.randrange(20000, 60000 - 6)
        socks = []
        try:
            for port in range(base, base + 6):
                s = socket.socket()
                socks.append(s)
                s.bind((harness.HOST, port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no 6 consecutive free ports found")


class ClusterScript:
    def __init__(self, tmp_path, swift_output="Build complete! (0.01s)\n", swift_status=0):
        for program in ("memcluster-node", "memcluster-proxy"):
            if not os.access(os.path.join(BIN, program), os.X_OK):
                pytest.fail(f"{BIN}/{program} not found (scripts/test builds it; or swift build -c release)")
        self.state = tmp_path / "state"
        self.base = free_base()
        self.proxy_port = self.base + 1
        self.extra = f"127.0.0.1:{self.base + 5}"
        stub = tmp_path / "bin"
        stub.mkdir()
        (stub / "build-output").write_text(swift_output)
        (stub / "swift").write_text(f'#!/bin/sh\ncat "{stub}/build-output"\nexit {swift_status}\n')
        (stub / "swift").chmod(0o755)
        self.env = dict(os.environ, MEMCLUSTER_STATE_DIR=str(self.state),
                        MEMCLUSTER_BASE_PORT=str(self.base), PATH=f"{stub}:{os.environ['PATH']}")
        self.seen: set[int] = set()     # every pid a pid file ever named

    def run(self, *args, timeout=60.0) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([SCRIPT, *args], env=self.env, capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL)
        finally:
            self.note_pids()

    def note_pids(self) -> None:
        for f in self.state.glob("*.pid") if self.state.is_dir() else ():
            try:
                self.seen.add(int(f.read_text()))
            except (OSError, ValueError):
                pass

    def ours(self, pid: int) -> bool:
        """Whether pid is alive and one of this test's programs (its ports or its state dir)."""
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().decode().split("\0")
        except OSError:
            return False
        ports = {str(p) for p in range(self.base, self.base + 6)}
        return str(self.state) in " ".join(argv) or (
            "-p" in argv and argv.index("-p") + 1 < len(argv) and argv[argv.index("-p") + 1] in ports)

    def alive(self) -> list[int]:
        self.note_pids()
        return sorted(pid for pid in self.seen if self.ours(pid))

    def kill_all(self) -> None:
        for pid in self.alive():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def nodes_in_proxy(self) -> list[str]:
        """The addresses `stats nodes` lists, in ring order."""
        with harness.TextClient((harness.HOST, self.proxy_port)) as c:
            stats = c.stats("nodes")
        return [value for name, value in stats.items() if name.endswith(":address")]


@pytest.fixture
def script(tmp_path):
    s = ClusterScript(tmp_path)
    try:
        yield s
    finally:
        s.kill_all()


def test_start_status_add_node_stop(script):
    s = script
    p = s.run("status")
    assert p.returncode == 0 and "the cluster is stopped" in p.stdout, p.stdout + p.stderr

    p = s.run("start")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "building memcluster (release, about a minute the first time)..." in p.stdout
    assert f"cluster up: proxy 127.0.0.1:{s.proxy_port}" in p.stdout
    assert len(s.alive()) == 4
    with harness.TextClient((harness.HOST, s.proxy_port)) as c:
        assert c.set("greeting", b"hello") == b"STORED"
    nodes = [f"127.0.0.1:{s.base + i}" for i in (2, 3, 4)]
    assert s.nodes_in_proxy() == nodes

    p = s.run("status")
    assert p.returncode == 0
    assert [line.split()[:2] for line in p.stdout.splitlines()[:4]] == [
        ["proxy", "running,"], *[[f"node-{s.base + i}", "running,"] for i in (2, 3, 4)]]
    assert all(f"address {n}" in p.stdout for n in nodes), p.stdout

    # A reload the proxy refuses (here: a line it does not know in the live
    # config) fails add-node loudly and leaves everything as it was.
    config = s.state / "cluster.yaml"
    before = config.read_text() + "bogus_option: 1\n"
    config.write_text(before)
    p = s.run("add-node")
    assert p.returncode == 1, p.stdout + p.stderr
    assert f"add-node failed: the proxy did not take node {s.extra}" in p.stderr
    assert "reload refused" in p.stderr and "bogus_option" in p.stderr
    assert config.read_text() == before
    assert not (s.state / f"node-{s.base + 5}.pid").exists() and len(s.alive()) == 4
    assert s.nodes_in_proxy() == nodes

    config.write_text(before.replace("bogus_option: 1\n", ""))
    p = s.run("add-node")
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"node {s.extra} added" in p.stdout
    assert s.nodes_in_proxy() == nodes + [s.extra]
    assert config.read_text().endswith(f"  - {s.extra}\n")
    with harness.TextClient((harness.HOST, s.proxy_port)) as c:
        assert c.get("greeting") == b"hello"

    pids = s.alive()
    assert len(pids) == 5
    p = s.run("stop")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "cluster stopped" in p.stdout
    assert [pid for pid in pids if s.ours(pid)] == [], "still running after stop"
    assert list(s.state.glob("*.pid")) == []
    assert config.exists(), "stop deleted the config"
    p = s.run("status")
    assert p.returncode == 0 and "the cluster is stopped" in p.stdout, p.stdout

    # The kept config brings the same four nodes back.
    p = s.run("start")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "using " in p.stdout and s.nodes_in_proxy() == nodes + [s.extra]
    assert s.run("stop").returncode == 0
    assert s.alive() == []


def test_stop_leaves_a_reused_pid_alone(script):
    """A pid file naming a process the script did not start (the pid was
    reused after the node died): stop must not kill it."""
    s = script
    assert s.run("start").returncode == 0
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        node_pid_file = s.state / f"node-{s.base + 2}.pid"
        node_pid_file.write_text(f"{stranger.pid}\n")
        p = s.run("status")
        assert f"pid {stranger.pid} is another program now" in p.stdout, p.stdout
        p = s.run("stop")
        assert p.returncode == 0
        assert f"pid {stranger.pid} is now another program" in p.stderr, p.stderr
        assert stranger.poll() is None, "stop killed a process it did not start"
    finally:
        stranger.kill()
        stranger.wait(timeout=10)


def test_failed_build_shows_the_compiler_errors(tmp_path):
    s = ClusterScript(tmp_path, swift_output=FAILED_BUILD, swift_status=1)
    try:
        p = s.run("start")
    finally:
        s.kill_all()
    assert p.returncode == 1
    assert p.stdout.startswith("building memcluster (release, about a minute the first time)...\n")
    err = p.stderr
    assert "main.swift:8:19: error: cannot convert value of type 'String' to specified type 'Int'" in err
    assert "main.swift:9:1: error: cannot find 'undefinedThing' in scope" in err
    assert " 8 | let broken: Int = \"text\"" in err and "`- error: cannot find 'undefinedThing'" in err
    assert "all of the build's output: " in err and "[5/6]" not in err
    assert list(s.state.glob("*.pid")) == [], "started something after a failed build"


def test_default_run_until_ctrl_c(script):
    """`scripts/cluster` alone, the README's first command: start, the demo
    with libmemcached's tools, then Ctrl-C (SIGINT to the whole process group,
    as a terminal sends it) stops everything."""
    s = script
    proc = subprocess.Popen([SCRIPT], env=s.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    lines = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("running; connect any memcached client"):
                break
        out = "".join(lines)
        assert "running; connect any memcached client" in out, out
        assert "memccat greeting  -> hello from memcluster" in out, out
        assert "memccat numbers   -> 1 ... 1000 numbers" in out, out
        assert "each key lives on 2 of the 3 nodes" in out
        pids = s.alive()
        assert len(pids) == 4
        os.killpg(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out + rest
        assert "cluster stopped" in rest, rest
        assert [pid for pid in pids if s.ours(pid)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
