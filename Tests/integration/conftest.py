"""pytest fixtures for the black-box integration suite.

Target selection (environment):
  MEMCLUSTER_TARGET=node       (default) test .build/release/memcluster-node,
                               or the binary named by MEMCLUSTER_NODE
  MEMCLUSTER_TARGET=memcached  test the real memcached (validates the suite)
  MEMCACHED_BIN                the reference memcached (default /usr/bin/memcached)
  MEMCLUSTER_SOAK_SECONDS      duration of the robustness soak (default 10)
  MEMCLUSTER_FUZZ_SECONDS      duration of the fuzz stage, test_fuzz.py (default 60)
  MEMCLUSTER_FUZZ_SEED         seed of the soak and the fuzz stage (default:
                               random, shown in the header)
  MEMCLUSTER_PROXY             the proxy binary for test_proxy_*.py (default
                               .build/release/memcluster-proxy); its cache
                               nodes are the target above, so with
                               MEMCLUSTER_TARGET=memcached the proxy runs in
                               front of real memcached

A missing binary is an error, never a skip; and any skip is reported as a
failure (see pytest_runtest_makereport) so nothing is skipped silently --
with one exception: when the suite does not run as root, the tests that
create network namespaces are skipped with the reason "needs root: network
namespaces" (proxy_harness.NEEDS_ROOT), so the rest can run clean.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess

import pytest

import harness
import proxy_harness


# --------------------------------------------------------------------------
# Session checks and reporting
# --------------------------------------------------------------------------

def _version_of(binary: str) -> str:
    try:
        out = subprocess.run([binary, "-V"], capture_output=True, timeout=10, text=True)
        return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"
    except Exception as e:  # noqa: BLE001
        return f"? ({e})"


_TARGET_VERSION = "?"


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    try:
        name = harness.target_name()
    except ValueError as e:
        raise pytest.UsageError(str(e))
    tgt = harness.target_binary()
    if not (os.path.isfile(tgt) and os.access(tgt, os.X_OK)):
        raise pytest.UsageError(
            f"target server binary not found: {tgt} (MEMCLUSTER_TARGET={name}). "
            "Build it with `swift build -c release`, set MEMCLUSTER_NODE, "
            "or run with MEMCLUSTER_TARGET=memcached.")
    ref = harness.reference_binary()
    if not (os.path.isfile(ref) and os.access(ref, os.X_OK)):
        raise pytest.UsageError(f"reference memcached not found: {ref} (apt-get install memcached)")
    # Smoke check: a target that does not start (or never answers `version`)
    # stops the run here with one clear message instead of failing every
    # test after a start timeout each.
    global _TARGET_VERSION
    try:
        srv = harness.start_server(tgt, [])
    except Exception as e:  # noqa: BLE001
        pytest.exit(f"target server does not start, nothing tested: {e}", returncode=3)
    try:
        with harness.TextClient(srv.addr) as c:
            _TARGET_VERSION = c.line("version").decode("latin-1")
    finally:
        srv.stop()


def pytest_report_header(config):
    tgt = harness.target_binary()
    # the target's version comes from its `version` reply (smoke check), not
    # from running it with -V: a binary that ignored -V would start serving
    return [
        f"memcluster target: {harness.target_name()} -> {tgt} [{_TARGET_VERSION}]",
        f"reference memcached: {harness.reference_binary()} [{_version_of(harness.reference_binary())}]",
        f"soak seconds: {soak_seconds()}",
        f"fuzz: MEMCLUSTER_FUZZ_SEED={fuzz_seed()} MEMCLUSTER_FUZZ_SECONDS={fuzz_seconds()}",
        f"proxy (test_proxy_*): {proxy_harness.proxy_binary()} in front of {tgt} nodes",
    ]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Nothing is skipped silently: a skip becomes a failure, except a
    namespace test's when not root (proxy_harness.NEEDS_ROOT)."""
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and not hasattr(rep, "wasxfail"):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        if reason.removeprefix("Skipped: ") == proxy_harness.NEEDS_ROOT and os.geteuid() != 0:
            return
        rep.outcome = "failed"
        rep.longrepr = f"test was skipped, which this suite treats as a failure: {reason}"


def pytest_collection_modifyitems(session, config, items):
    """The fuzz stage (marker `fuzz`) runs last, after everything it could
    otherwise keep from running (with -x)."""
    items.sort(key=lambda item: item.get_closest_marker("fuzz") is not None)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The fuzz stage's summary (seed, requests sent, replies checked,
    mismatches), when it ran."""
    import sys
    fuzz = sys.modules.get("fuzz")
    if fuzz is None or not fuzz.RESULTS:
        return
    terminalreporter.section("fuzz summary")
    for line in fuzz.summary_lines(fuzz_seed(), fuzz_seconds()):
        terminalreporter.write_line(line)


def soak_seconds() -> float:
    return float(os.environ.get("MEMCLUSTER_SOAK_SECONDS", "10"))


def fuzz_seconds() -> float:
    return float(os.environ.get("MEMCLUSTER_FUZZ_SECONDS", "60"))


_FUZZ_SEED: int | None = None


def fuzz_seed() -> int:
    """MEMCLUSTER_FUZZ_SEED, or one random seed for the whole session."""
    global _FUZZ_SEED
    if _FUZZ_SEED is None:
        env = os.environ.get("MEMCLUSTER_FUZZ_SEED", "").strip()
        _FUZZ_SEED = int(env) if env else random.randrange(1 << 30)
    return _FUZZ_SEED


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------

@pytest.fixture(scope="session")
def target_bin() -> str:
    return harness.target_binary()


@pytest.fixture(scope="session")
def reference_bin() -> str:
    return harness.reference_binary()


@pytest.fixture
def server_factory(target_bin):
    """start(flags=(), binary=None) -> harness.Server, started on a free
    loopback port and answering `version`; every server started is killed
    (by PID) when the test ends."""
    started: list[harness.Server] = []

    def start(flags=(), binary=None) -> harness.Server:
        srv = harness.start_server(binary or target_bin, list(flags))
        started.append(srv)
        return srv

    try:
        yield start
    finally:
        for srv in started:
            srv.stop()


@pytest.fixture
def server(server_factory) -> harness.Server:
    """The target with default flags. Unpacks as (host, port, process)."""
    return server_factory()


@pytest.fixture
def connect():
    """connect(server_or_addr) -> harness.RawConn, closed at teardown."""
    conns: list[harness.RawConn] = []

    def make(srv, timeout: float = 5.0) -> harness.RawConn:
        addr = srv.addr if hasattr(srv, "addr") else srv
        c = harness.RawConn(addr, timeout=timeout)
        conns.append(c)
        return c

    try:
        yield make
    finally:
        for c in conns:
            c.close()


@pytest.fixture
def text_client():
    clients: list[harness.TextClient] = []

    def make(srv, timeout: float = 5.0) -> harness.TextClient:
        c = harness.TextClient(srv.addr, timeout=timeout)
        clients.append(c)
        return c

    try:
        yield make
    finally:
        for c in clients:
            c.close()


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"required tool {name!r} is not installed (scripts/test installs it)")
    return path


# --------------------------------------------------------------------------
# Proxy fixtures (test_proxy_*.py)
# --------------------------------------------------------------------------

@pytest.fixture(scope="session")
def proxy_bin() -> str:
    """The proxy binary; missing = every proxy test fails (never skips)."""
    path = proxy_harness.proxy_binary()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"proxy binary not found: {path} (build it with `swift build -c release` "
                    "or set MEMCLUSTER_PROXY)")
    return path


@pytest.fixture
def cluster_factory(proxy_bin):
    """cluster_factory(n=3, replicas=2, ...) -> proxy_harness.Cluster: n cache
    nodes and a proxy on free loopback ports, the proxy's YAML in a temporary
    directory. Everything started is killed by PID when the test ends."""
    made: list[proxy_harness.Cluster] = []

    def make(**kw) -> proxy_harness.Cluster:
        c = proxy_harness.Cluster(**kw)
        made.append(c)
        return c

    try:
        yield make
    finally:
        for c in made:
            c.stop()


@pytest.fixture
def cluster(cluster_factory) -> proxy_harness.Cluster:
    """3 nodes, replicas 2, default hash, fast health settings."""
    return cluster_factory(n=3, replicas=2)
