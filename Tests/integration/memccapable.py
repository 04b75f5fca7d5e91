"""Runs libmemcached's memccapable conformance tool (ascii tests, -a) against
an address and checks that every test it reports passed."""

import re
import subprocess

from conftest import require_tool

LINE = re.compile(r"^(ascii \S.*?)\s+\[(\w+)\]\s*$")
# memccapable 1.1.4 runs 27 ascii tests (version ... stat).
ASCII_TESTS = 27


def assert_all_pass(host: str, port: int, context: str) -> None:
    """Runs memccapable -a against host:port; `context` (a log, a cluster
    description) is shown with its output on failure."""
    tool = require_tool("memccapable")
    p = subprocess.run([tool, "-a", "-t", "5", "-h", host, "-p", str(port)],
                       capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    out = p.stdout + p.stderr
    results = {}
    for ln in out.splitlines():
        m = LINE.match(ln.strip())
        if m:
            results[m.group(1).strip()] = m.group(2)
    bad = {k: v for k, v in results.items() if v != "pass"}
    shown = f"memccapable exit {p.returncode}, output:\n{out}\n{context}"
    assert len(results) >= ASCII_TESTS, f"parsed only {len(results)} test lines; " + shown
    assert not bad, f"failed: {bad}; " + shown
    assert "All tests passed" in out, shown
    assert p.returncode == 0, shown
