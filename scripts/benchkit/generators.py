"""The two load generators: memcluster-bench (ours) and libmemcached's
memcaslap (a generator the project did not write), each run once against a
tier while the host is watched. Both return the same figures, so a ratio can
be read from either and the two compared."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import time

from .hostload import HostWatch, quiet_check
from .targets import BIN, Tier

PERF = shutil.which("perf")
MEMCASLAP = shutil.which("memcaslap")
# Open-loop runs whose achieved rate is below this share of the target fell behind.
RATE_SHORTFALL = 0.97
# A closed-loop generator busier than this many cores is the bottleneck of the run.
GENERATOR_SATURATED_CORES = 0.9


def count_syscalls(pids: list[int], seconds: float):
    """Starts perf counting system calls of `pids` for `seconds`; returns the Popen or None."""
    if not PERF:
        return None
    return subprocess.Popen([PERF, "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-p", ",".join(map(str, pids)),
                             "--", "sleep", f"{seconds:.2f}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def syscalls_from(perf) -> int | None:
    if perf is None:
        return None
    _, err = perf.communicate(timeout=60)
    for line in err.splitlines():
        parts = line.split(",")
        if len(parts) > 2 and "raw_syscalls" in line and parts[0].strip().isdigit():
            return int(parts[0])
    return None


def tls_args(tier: Tier) -> list[str]:
    return ["--tls-ca", tier.tls_ca] if tier.tls_ca else []


def fill(tier: Tier, fill_args: list[str]):
    argv = [os.path.join(BIN, "memcluster-bench"), "--server", f"127.0.0.1:{tier.port}", "--fill", "--requests", "1",
            "--no-progress"] + tls_args(tier) + fill_args
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)


class Measured:
    """Host and server CPU around one run, and perf over its measured window."""

    def __init__(self, tier: Tier):
        self.tier = tier

    def __enter__(self):
        self.before_run = quiet_check(self.tier.cpu_seconds)
        self.front0 = self.tier.front_cpu_seconds()
        self.watch = HostWatch(self.tier.cpu_seconds).start()
        self.started = time.monotonic()
        self.perf = None
        return self

    def start_perf(self, seconds: float):
        self.perf = count_syscalls(self.tier.pids, seconds)

    def finish(self) -> dict:
        self.syscalls = syscalls_from(self.perf)
        self.wall = time.monotonic() - self.started
        self.host = self.watch.stop()
        self.tier_cpu = self.watch.tier_seconds
        self.front_cpu = self.tier.front_cpu_seconds() - self.front0
        return {"host_before": self.before_run.as_dict(), "host_during": self.host.as_dict()}

    def __exit__(self, *exc):
        if self.perf is not None and self.perf.poll() is None:
            self.perf.kill()
            self.perf.wait()
        return False


def run_memcluster_bench(tier: Tier, args: list[str], seconds: float, workdir: str, generator_cpu: str) -> dict:
    """One measured run of memcluster-bench `args` against `tier`."""
    report = os.path.join(workdir, "run.json")
    argv = ["taskset", "-c", generator_cpu, os.path.join(BIN, "memcluster-bench"), "--server",
            f"127.0.0.1:{tier.port}", "--duration", str(seconds), "--warmup", "0.5", "--no-progress",
            "--json", report] + tls_args(tier) + args
    with Measured(tier) as m:
        runner = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(0.5)  # perf attaches for the measured window only (after the warm-up)
            m.start_perf(seconds - 0.2)
            _, err = runner.communicate(timeout=seconds + 120)
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait()
        host = m.finish()
    if runner.returncode not in (0, 1) or not os.path.exists(report):
        raise RuntimeError(f"memcluster-bench failed against {tier.name}: {err.strip()[-500:]}")
    with open(report) as f:
        data = json.load(f)
    os.unlink(report)
    # CPU was read around the whole run (warm-up included): divide by all its requests.
    all_ops = data["ops"] * (m.wall / data["duration_seconds"]) if data["duration_seconds"] else data["ops"]
    measured_ops = data["ops"] * (seconds - 0.2) / seconds
    client = data["client_cpu"]
    generator_cores = (client["user_seconds"] + client["system_seconds"]) / max(data["duration_seconds"], 1e-3)
    result = {
        "generator": "memcluster-bench",
        "ops_per_second": data["ops_per_second"],
        "p50_us": data["latency_us"]["all"]["p50"],
        "p99_us": data["latency_us"]["all"]["p99"],
        "errors": data["errors"]["total"],
        "hit_ratio": data["hit_ratio"],
        "server_cpu_us_per_request": m.tier_cpu * 1e6 / max(all_ops, 1),
        "front_cpu_us_per_request": m.front_cpu * 1e6 / max(all_ops, 1),
        "syscalls_per_request": (m.syscalls / max(measured_ops, 1)) if m.syscalls else None,
        "generator_cores": generator_cores,
        "latency_curve_us": data["latency_us"].get("curve"),
        **host,
    }
    result.update(generator_schedule(data, generator_cores))
    return result


def generator_schedule(data: dict, generator_cores: float) -> dict:
    """Did the generator keep up? Open loop: its own schedule (dispatch lag, achieved
    rate). Closed loop: whether its core was saturated, so the run measured it."""
    loop = data.get("open_loop")
    if loop:
        achieved = data["ops_per_second"] / loop["target_rate"] if loop["target_rate"] else 1.0
        behind = bool(loop["generator_behind"]) or achieved < RATE_SHORTFALL
        why = []
        if loop["generator_behind"]:
            why.append(f"dispatch lag p99 {loop['dispatch_lag_us']['p99']:.0f} us")
        if achieved < RATE_SHORTFALL:
            why.append(f"sent {achieved:.0%} of the target rate")
        return {"generator_behind": behind, "generator_note": "; ".join(why),
                "dispatch_lag_p99_us": loop["dispatch_lag_us"]["p99"], "late": loop["late"],
                "unsent": loop["unsent"], "achieved_rate_share": achieved}
    saturated = generator_cores >= GENERATOR_SATURATED_CORES
    return {"generator_behind": False, "generator_saturated": saturated,
            "generator_note": f"generator used {generator_cores:.2f} cores" if saturated else ""}


MEMCASLAP_RESULT = re.compile(r"Run time: [\d.]+s Ops: (\d+) TPS: (\d+)")


def run_memcaslap(tier: Tier, args: list[str], seconds: float, generator_cpu: str) -> dict:
    """One run of memcaslap (closed loop, its own keys and 9:1 get:set mix) against `tier`."""
    if not MEMCASLAP:
        raise RuntimeError("memcaslap is missing (apt-get install libmemcached-tools)")
    if tier.tls_ca:
        raise RuntimeError("memcaslap speaks no TLS")
    whole = max(1, round(seconds))
    argv = ["taskset", "-c", generator_cpu, MEMCASLAP, "-s", f"127.0.0.1:{tier.port}", "-t", f"{whole}s"] + args
    with Measured(tier) as m:
        children0 = _children_cpu_seconds()
        runner = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            time.sleep(0.5)
            m.start_perf(whole - 0.7)
            out, _ = runner.communicate(timeout=whole + 60)
            # memcaslap is reaped and perf not yet: the children's CPU so far is memcaslap's.
            generator_cores = (_children_cpu_seconds() - children0) / max(time.monotonic() - m.started, 1e-3)
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait()
        host = m.finish()
    found = MEMCASLAP_RESULT.findall(out or "")
    if not found:
        raise RuntimeError(f"memcaslap printed no result against {tier.name}:\n{(out or '')[-500:]}")
    ops, tps = int(found[-1][0]), int(found[-1][1])
    # memcaslap reports no latency percentiles; its ops cover the whole run.
    return {
        "generator": "memcaslap",
        "ops_per_second": float(tps),
        "p50_us": None,
        "p99_us": None,
        "errors": 0,
        "hit_ratio": None,
        "server_cpu_us_per_request": m.tier_cpu * 1e6 / max(ops, 1),
        "front_cpu_us_per_request": m.front_cpu * 1e6 / max(ops, 1),
        "syscalls_per_request": (m.syscalls / max(ops * (whole - 0.7) / whole, 1)) if m.syscalls else None,
        "generator_cores": generator_cores,
        "generator_behind": False,
        "generator_saturated": generator_cores >= GENERATOR_SATURATED_CORES,
        "generator_note": f"generator used {generator_cores:.2f} cores" if generator_cores >= GENERATOR_SATURATED_CORES else "",
        **host,
    }


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
