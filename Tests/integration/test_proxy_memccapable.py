"""libmemcached's memccapable (ascii tests, -a) through the proxy in front of
3 nodes (replicas 2): every test it runs must pass; its whole output, the
proxy's log and the cluster are shown on failure."""

import re
import subprocess

from conftest import require_tool

LINE = re.compile(r"^(ascii \S.*?)\s+\[(\w+)\]\s*$")


def test_memccapable_ascii_through_proxy(cluster):
    tool = require_tool("memccapable")
    host, port = cluster.addr
    p = subprocess.run([tool, "-a", "-t", "5", "-h", host, "-p", str(port)],
                       capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    out = p.stdout + p.stderr
    results = {}
    for ln in out.splitlines():
        m = LINE.match(ln.strip())
        if m:
            results[m.group(1).strip()] = m.group(2)
    bad = {k: v for k, v in results.items() if v != "pass"}
    shown = f"memccapable exit {p.returncode}, output:\n{out}\n{cluster.describe()}"
    # memccapable 1.1.4 runs 27 ascii tests (version ... stat)
    assert len(results) >= 27, f"parsed only {len(results)} test lines; " + shown
    assert not bad, f"failed: {bad}; " + shown
    assert "All tests passed" in out, shown
    assert p.returncode == 0, shown
    assert cluster.proxy.alive(), "proxy died during memccapable; " + shown
    assert all(n.alive() for n in cluster.nodes), shown
