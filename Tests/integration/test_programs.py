"""The programs' own command lines, as a user meets them: `--version`,
`--help` at 80 columns, the proxy's `--check-config`, and counts of one
written in the singular ("1 thread", not "1 threads").

Binaries: MEMCLUSTER_NODE, MEMCLUSTER_PROXY and MEMCLUSTER_BENCH, by default
the release builds in .build/release (whatever MEMCLUSTER_TARGET says: these
are memcluster's programs). Every process started ends within its timeout
or is killed by PID.
"""

from __future__ import annotations

import os
import subprocess

import pytest

import harness
import proxy_harness

BENCH = os.environ.get("MEMCLUSTER_BENCH",
                       os.path.join(harness.REPO_ROOT, ".build", "release", "memcluster-bench"))
NODE = os.environ.get("MEMCLUSTER_NODE", harness.DEFAULT_NODE)
ADMIN = os.path.join(os.path.dirname(proxy_harness.proxy_binary()), "memcluster-admin")


def run(argv, timeout=20.0) -> subprocess.CompletedProcess:
    for path in argv[:1]:
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            pytest.fail(f"program not found: {path} (build it with `swift build -c release`)")
    # COLUMNS: ArgumentParser wraps help at the terminal's width; the tests
    # read it as an 80-column terminal would show it.
    env = dict(os.environ, COLUMNS="80")
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=env)


@pytest.mark.parametrize("program,flag,expected", [
    ("proxy", "--version", "memcluster-proxy 1.6.18-memcluster-proxy"),
    ("bench", "--version", "memcluster-bench 1.6.18-memcluster"),
    ("node", "-V", "memcached 1.6.18-memcluster"),
    ("admin", "--version", "memcluster-admin 1.6.18-memcluster"),
])
def test_version(program, flag, expected):
    binary = {"proxy": proxy_harness.proxy_binary(), "bench": BENCH, "node": NODE, "admin": ADMIN}[program]
    p = run([binary, flag])
    assert (p.returncode, p.stdout, p.stderr) == (0, expected + "\n", "")


@pytest.mark.parametrize("program", ["proxy", "bench", "admin"])
def test_help_fits_80_columns(program):
    binary = {"proxy": proxy_harness.proxy_binary(), "bench": BENCH, "admin": ADMIN}[program]
    p = run([binary, "--help"])
    assert p.returncode == 0, p.stderr
    long = [line for line in p.stdout.splitlines() if len(line) > 80]
    assert not long, "lines over 80 columns:\n" + "\n".join(long)
    # a paragraph broken by a newline in the source shows as a stray short line
    stray = [line for line in p.stdout.splitlines()
             if line and not line.startswith(" ") and len(line.split()) < 3 and not line.endswith(":")]
    assert not stray, f"stray short lines: {stray}\n{p.stdout}"
    assert "--version" in p.stdout
    if program == "proxy":
        assert "--metrics-listen, --metrics <host:port>" in p.stdout


OPTIONS = ["listen", "threads", "nodes", "replicas", "hash", "backend_connections", "request_timeout_ms",
           "connect_timeout_ms", "failure_limit", "probe_initial_ms", "probe_max_ms", "flap_window_s",
           "write_policy", "miss_failover", "replica_check", "flush_all", "warmup_s", "membership_settle_ms", "rebalance",
           "rebalance_keys_per_s", "watch_config", "key_hash", "log_level", "item_size_max", "max_connections",
           "client_reply_max", "request_line_max", "shutdown_grace_ms", "metrics_listen", "admin_token_file",
           "admin_token", "admin_token_protects_metrics", "tls", "node_tls", "node_auth"]


def test_check_config_prints_every_option_and_reads_back(tmp_path):
    proxy = proxy_harness.proxy_binary()
    example = os.path.join(harness.REPO_ROOT, "examples", "proxy.yaml")
    p = run([proxy, "--config", example, "--check-config", "--metrics-listen", "9150", "--threads", "3"])
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("# memcluster-proxy --check-config: the configuration in effect")
    keys = {line.lstrip("# ").split(":")[0] for line in lines[1:] if not line.startswith(" ")}
    with open(example) as f:
        documented = f.read()
    for option in OPTIONS:
        assert f"{option}:" in documented, f"{option} is not in examples/proxy.yaml"
    # every option, the token as a comment (there is none): admin_token_file is
    # written only when the token comes from a file
    assert keys == set(OPTIONS) - {"admin_token_file"}, p.stdout
    assert "threads: 3" in lines and "metrics_listen: 127.0.0.1:9150" in lines
    assert lines[-3:] == ["  - 127.0.0.1:22122", "  - 127.0.0.1:22123", "  - 127.0.0.1:22124"]
    # what it prints is a configuration file the proxy runs with unchanged
    saved = tmp_path / "effective.yaml"
    saved.write_text(p.stdout)
    again = run([proxy, "--config", str(saved), "--check-config"])
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[1:] == lines[1:]


@pytest.mark.parametrize("text,error", [
    ("nodes: []\n", "no nodes"),
    ("threads: many\nnodes: [127.0.0.1:1]\n", "bad.yaml:1: threads: expected an integer"),
])
def test_check_config_refuses_with_the_error(tmp_path, text, error):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    p = run([proxy_harness.proxy_binary(), "--config", str(bad), "--check-config"])
    assert p.returncode == 1 and p.stdout == "" and error in p.stderr, (p.returncode, p.stdout, p.stderr)


def test_counts_of_one_are_singular(server_factory):
    node = server_factory(["-t", "1", "-v"], binary=NODE)
    assert ", 1 thread, " in node.log(), node.log()
    p = run([BENCH, "--server", f"{harness.HOST}:{node.port}", "-t", "1", "-c", "1", "--keys", "1",
             "--key-size", "8", "--requests", "1", "--ratio", "0:1", "--no-progress"], timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    for phrase in ("1 thread x 1 connection,", "workload: 1 key (", ", 1 request,", "1 op (1 get for 1 key, 0 sets)"):
        assert phrase in p.stdout, f"{phrase!r} not in:\n{p.stdout}"
