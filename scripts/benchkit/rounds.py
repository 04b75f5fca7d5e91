"""Alternating rounds: every target of a part is started (and filled), then
each round runs the workload against the reference and each candidate in
turn (A B C A B C ...), so a slow minute hurts all of them."""

from __future__ import annotations

import sys

from .generators import fill, run_memcaslap, run_memcluster_bench
from .spread import median


def run_once(tier, workload: dict, seconds: float, workdir: str, generator_cpu: str) -> dict:
    if workload.get("generator") == "memcaslap":
        return run_memcaslap(tier, workload["args"], seconds, generator_cpu)
    return run_memcluster_bench(tier, workload["args"], seconds, workdir, generator_cpu)


def compare(candidates: list[tuple[str, callable]], reference: tuple[str, callable], work: list[dict],
            repeats: int, seconds: float, workdir: str, generator_cpu: str = "1",
            busy_threshold: float = 0.25) -> list[dict]:
    """Runs every workload against the reference and each candidate, alternating."""
    rows = []
    starters = [reference] + candidates
    for workload in work:
        results = {name: [] for name, _ in starters}
        tiers = {}
        try:
            for name, start in starters:
                tiers[name] = start()
                if workload.get("fill_args") is not None:
                    fill(tiers[name], workload["fill_args"])
            for round_number in range(repeats):
                for name, _ in starters:
                    run = run_once(tiers[name], workload, seconds, workdir, generator_cpu)
                    run["round"] = round_number
                    results[name].append(run)
                    print(progress_line(workload["name"], name, run, busy_threshold), file=sys.stderr)
        finally:
            for tier in tiers.values():
                tier.stop()
        summary = {}
        for name, runs in results.items():
            numeric = [k for k, v in runs[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
            summary[name] = {key: median([run.get(key) for run in runs]) for key in numeric}
        rows.append({"workload": workload["name"], "generator": workload.get("generator", "memcluster-bench"),
                     "confirms": workload.get("confirms"), "latency": workload.get("latency", False),
                     "reference": reference[0], "results": summary, "runs": results})
    return rows


def progress_line(workload: str, target: str, run: dict, busy_threshold: float) -> str:
    notes = []
    during = run.get("host_during", {})
    before = run.get("host_before", {})
    foreign = max(during.get("foreign_cores", 0), before.get("foreign_cores", 0))
    if foreign > busy_threshold:
        notes.append(f"HOST BUSY: {foreign:.2f} foreign cores")
    if run.get("generator_note"):
        notes.append(run["generator_note"])
    return f"  {workload:<30} {target:<28} {run['ops_per_second']:>10.0f} ops/s  {'; '.join(notes)}"
