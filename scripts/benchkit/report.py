"""Markdown for results.md: per-part tables whose ratio cells carry their
spread and flags, the memcaslap confirmation of each ratio, and what the host
was doing."""

from __future__ import annotations

from .spread import Ratio, run_busy, summarise_ratio

# (column, run key, what a lower value means)
RATIO_KEYS = [("ops/s", "ops_per_second"), ("p99", "p99_us"), ("CPU/req", "server_cpu_us_per_request")]
# Two generators agree on a ratio when their ranges overlap or their medians are this close.
AGREEMENT = 0.15


def ratio_text(ours, theirs) -> str:
    return "-" if ours is None or not theirs else f"{ours / theirs:.2f}x"


def fmt(value, digits=1):
    return "-" if value is None else f"{value:,.{digits}f}"


def row_ratios(row: dict, max_spread: float, busy_threshold: float) -> dict:
    """{candidate: {key: Ratio}} for one workload row; stored back into the row."""
    reference = row["runs"][row["reference"]]
    ratios = {}
    for name, runs in row["runs"].items():
        if name == row["reference"]:
            continue
        ratios[name] = {key: summarise_ratio(runs, reference, key, max_spread, busy_threshold)
                        for _, key in RATIO_KEYS}
    row["ratios"] = {name: {key: r.as_dict() for key, r in by_key.items()} for name, by_key in ratios.items()}
    return ratios


def table(rows: list[dict], title: str, max_spread: float, busy_threshold: float) -> str:
    lines = [f"### {title}", "",
             "| workload | generator | target | ops/s | p50 us | p99 us | server CPU us/req | front CPU us/req "
             "| syscalls/req | ops/s ratio | p99 ratio | CPU/req ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        ratios = row_ratios(row, max_spread, busy_threshold)
        for name, result in row["results"].items():
            if name == row["reference"]:
                cells = ["1.00x" if result.get(key) is not None else "-" for _, key in RATIO_KEYS]
            else:
                cells = [ratios[name][key].cell() for _, key in RATIO_KEYS]
            lines.append("| " + " | ".join([
                row["workload"], row["generator"], name, fmt(result.get("ops_per_second"), 0),
                fmt(result.get("p50_us")), fmt(result.get("p99_us")),
                fmt(result.get("server_cpu_us_per_request"), 2), fmt(result.get("front_cpu_us_per_request"), 2),
                fmt(result.get("syscalls_per_request"), 2)] + cells) + " |")
    return "\n".join(lines)


def _agree(a: dict, b: dict) -> bool:
    if a["median"] is None or b["median"] is None:
        return False
    overlap = a["min"] <= b["max"] and b["min"] <= a["max"]
    return overlap or abs(a["median"] / b["median"] - 1) <= AGREEMENT


def confirmation(rows: list[dict]) -> str:
    """Each memcaslap row against the memcluster-bench workload it confirms (call after table())."""
    by_name = {row["workload"]: row for row in rows}
    lines = ["| ratio | target | memcluster-bench | memcaslap | verdict |", "|---|---|---|---|---|"]
    found = False
    for row in rows:
        ours = by_name.get(row.get("confirms") or "")
        if row["generator"] != "memcaslap" or ours is None:
            continue
        for name, by_key in row["ratios"].items():
            for label, key in [("ops/s", "ops_per_second"), ("CPU/req", "server_cpu_us_per_request")]:
                a, b = ours["ratios"][name][key], by_key[key]
                if not (a["headline"] and b["headline"]):
                    verdict = "not confirmed: flagged (see table)"
                elif _agree(a, b):
                    verdict = "confirmed"
                else:
                    verdict = "**generators disagree**"
                found = True
                lines.append(f"| {label} ({ours['workload']}) | {name} | {_short(a)} | {_short(b)} | {verdict} |")
    return "\n".join(lines) if found else ""


def ratio_cell(r: dict) -> str:
    """A stored ratio (Ratio.as_dict) as its table cell."""
    ratio = Ratio(r["rounds"], r["median"], r["min"], r["max"], list(r["flags"]))
    return ratio.cell()


def _short(r: dict) -> str:
    if r["median"] is None:
        return "-"
    return f"{r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f})"


def host_summary(rows: list[dict], busy_threshold: float) -> str:
    runs = [run for row in rows for target_runs in row["runs"].values() for run in target_runs]
    if not runs:
        return ""
    busy = [run for run in runs if run_busy(run, busy_threshold)]
    foreign = [run["host_during"]["foreign_cores"] for run in runs]
    before = [run["host_before"]["foreign_cores"] for run in runs]
    steal = [run["host_during"]["steal_cores"] for run in runs]
    behind = [run for run in runs if run.get("generator_behind")]
    saturated = [run for run in runs if run.get("generator_saturated")]
    return (f"Host: {len(busy)} of {len(runs)} runs saw foreign load over {busy_threshold:.2f} cores "
            f"(foreign cores during runs: max {max(foreign):.2f}, median {sorted(foreign)[len(foreign) // 2]:.2f}; "
            f"just before runs: max {max(before):.2f}; steal: max {max(steal):.2f}). "
            f"Generator behind its schedule in {len(behind)} runs; generator core saturated "
            f"(closed loop bound by the generator) in {len(saturated)} runs.")


def headline_count(rows: list[dict]) -> tuple[int, int]:
    total = flagged = 0
    for row in rows:
        for by_key in row.get("ratios", {}).values():
            for r in by_key.values():
                if r["median"] is None:
                    continue
                total += 1
                flagged += not r["headline"]
    return total, flagged
