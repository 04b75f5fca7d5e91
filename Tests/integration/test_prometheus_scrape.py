"""The proxy's /metrics read by a real Prometheus server (Debian's
`prometheus` package): a scrape config like the one the README gives, with the
admin token as a credentials file, then queries through Prometheus' HTTP API
for a latency quantile and `node_up`. The exposition is judged by the parser
that will read it in production, not by a check written here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

import harness
import proxy_harness as ph
from conftest import require_tool

TOKEN = "scrape-token-0123456789abcdef"


class PrometheusServer:
    def __init__(self, target: tuple[str, int], token_file: str):
        self.tmpdir = tempfile.mkdtemp(prefix="prometheus-")
        self.port = harness.free_port()
        config = os.path.join(self.tmpdir, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n"
                    "  scrape_interval: 1s\n"
                    "  scrape_timeout: 1s\n"
                    "scrape_configs:\n"
                    "  - job_name: memcluster-proxy\n"
                    "    authorization:\n"
                    f"      credentials_file: {token_file}\n"
                    "    static_configs:\n"
                    f"      - targets: ['{target[0]}:{target[1]}']\n")
        self.log_path = os.path.join(self.tmpdir, "prometheus.log")
        argv = [require_tool("prometheus"), f"--config.file={config}",
                f"--storage.tsdb.path={os.path.join(self.tmpdir, 'data')}",
                f"--web.listen-address=127.0.0.1:{self.port}"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         close_fds=True)

    def api(self, path: str, **params) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=5) as r:
            answer = json.load(r)
        assert answer["status"] == "success", answer
        return answer["data"]

    def wait(self, predicate, what: str, timeout: float = 30.0):
        """Polls predicate() (None or False = not yet) until it gives a value."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"prometheus exited: {self.log()}"
            try:
                last = predicate()
                if last:
                    return last
            except OSError as e:     # not listening yet
                last = e
            time.sleep(0.25)
        raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})\n{self.log()}")

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()[-3000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def test_a_real_prometheus_scrapes_latency_and_node_up(cluster_factory, tmp_path):
    token_file = tmp_path / "admin.token"
    token_file.write_text(TOKEN + "\n")
    cl = cluster_factory(n=3, replicas=2, metrics=True,
                         options={"admin_token_file": str(token_file), "admin_token_protects_metrics": True})
    assert cl.http("GET", "/metrics")[0] == 401, "the scrape below must prove the token is sent"
    c = cl.raw()
    ph.set_many(c, [(f"p{i}", b"v" * 100) for i in range(300)])
    ph.get_each(c, [f"p{i}" for i in range(300)])
    prometheus = PrometheusServer(cl.metrics_addr, str(token_file))
    try:
        def scraped():
            targets = prometheus.api("targets")["activeTargets"]
            if not targets:
                return None                                 # the config is still being applied
            [target] = targets
            if target["health"] == "up":
                return target
            assert not target["lastError"], target     # a parse or auth error is final
            return None
        target = prometheus.wait(scraped, "the proxy's /metrics scraped")
        assert target["lastError"] == "", target

        def query(expression: str):
            return prometheus.api("query", query=expression)["result"]

        up = prometheus.wait(lambda: query("memcluster_proxy_node_up"), "node_up stored")
        assert sorted((s["metric"]["node"], s["value"][1]) for s in up) == \
            sorted((cl.node_addr(i), "1") for i in range(3)), up
        [median] = query('histogram_quantile(0.5, memcluster_proxy_request_duration_seconds_bucket{command="get"})')
        assert 0 < float(median["value"][1]) <= 5, median
        [p99] = query('histogram_quantile(0.99, sum by (le) (memcluster_proxy_node_request_duration_seconds_bucket))')
        assert 0 < float(p99["value"][1]) <= 5, p99
        [count] = query('memcluster_proxy_request_duration_seconds_count{command="set"}')
        assert float(count["value"][1]) == 300, count
        [hits] = query("memcluster_proxy_get_hits_total")
        assert float(hits["value"][1]) == 300, hits
        # Every family carries its HELP and TYPE as Prometheus read them.
        metadata = prometheus.api("metadata")
        assert metadata["memcluster_proxy_request_duration_seconds"][0]["type"] == "histogram", metadata
        assert metadata["memcluster_proxy_node_up"][0]["type"] == "gauge"
        assert metadata["memcluster_proxy_get_hits_total"][0]["type"] == "counter", metadata
    finally:
        prometheus.stop()
