"""What a developer who is not root gets.

* The suite's skip rule (conftest.py): a test that needs network namespaces
  is skipped with "needs root: network namespaces" when not root, and that
  is the only skip allowed; as root the same skip, and any other skip
  anywhere, is a failure.
* scripts/test's install step, when packages are missing and it cannot
  become root: it names them and the command that installs them.

When the suite runs as root, the checks run in a user namespace of their
own (`unshare --user`), where the process's user is nobody: no root, no
capabilities, so no namespaces can be created and nothing installed, while
the files it needs (this interpreter may live in root's home) stay readable.
Otherwise they run as the user running the suite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

import pytest

import harness
import proxy_harness

HERE = os.path.dirname(os.path.abspath(__file__))

RULE_TESTS = '''
import pytest
import proxy_harness as ph

def test_needs_netns():
    ph.require_netns()

def test_skips_with_the_root_reason():
    pytest.skip(ph.NEEDS_ROOT)

def test_skips_for_another_reason():
    pytest.skip("the network is slow today")
'''


def as_non_root(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    unshare = shutil.which("unshare")
    if not unshare:
        pytest.fail("unshare (util-linux) is needed to run a check as a user other than root")
    return [unshare, "--user", *argv]


def private_dir() -> str:
    return tempfile.mkdtemp(prefix="mc-nonroot-")


def outcomes(rootdir: str, non_root: bool) -> dict[str, tuple[str, str]]:
    """Runs RULE_TESTS under this suite's conftest.py (loaded as a plugin):
    {test name: (outcome, message)} from its JUnit XML."""
    with open(os.path.join(rootdir, "test_rule.py"), "w") as f:
        f.write(RULE_TESTS)
    junit = os.path.join(rootdir, "junit.xml")
    argv = [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider",
            "--rootdir", rootdir, "--junitxml", junit, "-q", os.path.join(rootdir, "test_rule.py")]
    env = dict(os.environ, PYTHONPATH=HERE, PYTHONDONTWRITEBYTECODE="1", HOME=rootdir)
    p = subprocess.run(as_non_root(argv) if non_root else argv, cwd=rootdir, env=env,
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert os.path.exists(junit), p.stdout + p.stderr
    result = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            node = case.find(kind)
            if node is not None:
                outcome, message = kind, node.get("message", "")
        result[case.get("name")] = (outcome, message)
    return result


def test_only_the_root_reason_is_skipped_when_not_root():
    rootdir = private_dir()
    try:
        got = outcomes(rootdir, non_root=True)
    finally:
        shutil.rmtree(rootdir, ignore_errors=True)
    assert got["test_needs_netns"] == ("skipped", proxy_harness.NEEDS_ROOT), got
    assert got["test_skips_with_the_root_reason"] == ("skipped", proxy_harness.NEEDS_ROOT), got
    assert got["test_skips_for_another_reason"][0] == "failure", got


def test_as_root_every_skip_fails():
    rootdir = private_dir()
    try:
        got = outcomes(rootdir, non_root=False)
    finally:
        shutil.rmtree(rootdir, ignore_errors=True)
    if os.geteuid() != 0:
        # not root: the rule above holds for this run too
        assert got["test_needs_netns"][0] == "skipped", got
        return
    assert got["test_needs_netns"][0] == "passed", got        # root creates namespaces
    outcome, message = got["test_skips_with_the_root_reason"]
    assert outcome == "failure" and "treats as a failure" in message, got
    assert got["test_skips_for_another_reason"][0] == "failure", got


def test_scripts_test_names_what_it_cannot_install():
    """scripts/test in a copy of the repository's scripts, as a user who is
    not root and has no sudo, on a machine where dpkg reports every package
    missing: the install step stops with the package names and the command,
    and nothing is installed."""
    root = private_dir()
    try:
        os.makedirs(os.path.join(root, "scripts"))
        os.makedirs(os.path.join(root, "Tests", "integration"))
        os.makedirs(os.path.join(root, "bin"))
        shutil.copy(os.path.join(harness.REPO_ROOT, "scripts", "test"), os.path.join(root, "scripts", "test"))
        shutil.copy(os.path.join(HERE, "requirements.txt"), os.path.join(root, "Tests", "integration"))
        stubs = {"dpkg-query": "exit 1",                                   # nothing installed
                 "sudo": 'echo "sudo: a password is required" >&2; exit 1',
                 "apt-get": 'echo "apt-get must not run" >&2; exit 99'}
        for name, body in stubs.items():
            path = os.path.join(root, "bin", name)
            with open(path, "w") as f:
                f.write(f"#!/bin/sh\n{body}\n")
            os.chmod(path, 0o755)
        env = dict(os.environ, PATH=f"{root}/bin:{os.environ['PATH']}", HOME=root)
        p = subprocess.run(as_non_root(["bash", os.path.join(root, "scripts", "test"), "--integration-only"]),
                           cwd=root, env=env, capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    assert "missing Debian packages: libevent-dev libssl-dev pkg-config memcached" in out, out
    assert "installing them needs root" in out
    assert "    apt-get install --no-install-recommends libevent-dev libssl-dev" in out
    assert "apt-get must not run" not in out
    assert "install        FAILED" in out and "integration    NOT RUN (no .venv)" in out, out
