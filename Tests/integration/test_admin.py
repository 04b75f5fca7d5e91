"""memcluster-admin, as an operator runs it against running proxies:

- `status` shows every proxy's generation, phase and nodes (with item
  counts), exits 0 when all answer and agree, 1 when one is down or they
  disagree;
- `add` / `remove` edit the shared YAML file in place (comments kept) and,
  with --wait, return once every proxy is on one new generation;
- a refused edit leaves the file untouched and says why.
"""

from __future__ import annotations

import os
import subprocess

import harness
import proxy_harness as ph


def admin_binary() -> str:
    return os.path.join(os.path.dirname(ph.proxy_binary()), "memcluster-admin")


def admin(*args: str, timeout: float = 40) -> subprocess.CompletedProcess:
    return subprocess.run([admin_binary(), *args], capture_output=True, text=True, timeout=timeout)


def proxy_flags(*addrs) -> list[str]:
    out = []
    for host, port in addrs:
        out += ["--proxy", f"{host}:{port}"]
    return out


def test_status_add_and_remove_across_two_proxies(cluster_factory):
    cl = cluster_factory(n=3, replicas=2, options={"warmup_s": 1})
    with open(cl.config_path, "a") as f:
        f.write("# kept by memcluster-admin\n")
    port = harness.free_port()
    second = ph.spawn([ph.proxy_binary(), "--config", cl.config_path, "--listen", f"{harness.HOST}:{port}"],
                      harness.HOST, port, prefix="mcproxy2-")
    try:
        both = proxy_flags(cl.addr, (harness.HOST, port))
        r = admin("status", *both)
        assert r.returncode == 0, r
        generation = cl.stats()["proxy_membership_generation"]
        assert f"all 2 proxies on generation {generation}" in r.stdout, r.stdout
        assert r.stdout.count(cl.node_addr(0)) == 2 and "stable" in r.stdout, r.stdout

        new = cl.add_node()
        r = admin("add", "--config", cl.config_path, cl.node_addr(new), "--wait", *both)
        assert r.returncode == 0, r
        assert "# kept by memcluster-admin" in open(cl.config_path).read()
        assert cl.stats()["proxy_nodes"] == "4"
        with harness.TextClient((harness.HOST, port)) as t:
            assert t.stats()["proxy_membership_generation"] == cl.stats()["proxy_membership_generation"] != generation
        assert "all 2 proxies on generation" in r.stdout, r.stdout

        # the same node twice is refused and the file stays as it was
        before = open(cl.config_path).read()
        r = admin("add", "--config", cl.config_path, cl.node_addr(new))
        assert r.returncode == 1 and "is already" in r.stderr, r
        assert open(cl.config_path).read() == before

        ph.wait_until(lambda: cl.stats()["proxy_membership_phase"] == "stable", 15, what="the addition to end")
        r = admin("remove", "--config", cl.config_path, cl.node_addr(new), "--wait", *both)
        assert r.returncode == 0, r
        assert cl.stats()["proxy_nodes"] == "3"
        assert "leaving" in r.stdout, r.stdout      # still read while the removal is under way

        second.stop()
        r = admin("status", *both)
        assert r.returncode == 1 and "1 of 2 proxies did not answer" in r.stdout, r
    finally:
        second.stop()
