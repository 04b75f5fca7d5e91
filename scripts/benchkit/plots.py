"""Pictures of a bench-compare run, next to its results.md:

  latency-<part>.png  the latency percentile curve of every memcluster-bench
                      workload (HDR style: percentile on a log axis of
                      1 / (1 - p), so each "nine" is as wide as the median's
                      half); one thin line per round, one colour per target,
                      so the rounds' spread shows
  ratios.png          every ratio as its median (dot) and min-max over the
                      rounds (bar), grey and marked when flagged

Runs in .venv, where scripts/bench-compare installs matplotlib from
Benchmarks/requirements.txt:  .venv/bin/python scripts/benchkit/plots.py out/bench/results.json
"""

from __future__ import annotations

import json
import math
import os
import sys
import textwrap

PARTS = {"node": "memcluster-node vs memcached", "proxy": "memcluster-proxy vs twemproxy",
         "tls_node": "memcluster-node -Z vs memcached -Z", "tls_proxy": "memcluster-proxy, TLS vs plain text"}
RATIO_LABELS = {"ops_per_second": "ops/s", "p99_us": "p99", "server_cpu_us_per_request": "CPU/req"}
NINES = [0, 90, 99, 99.9, 99.99, 99.999]


def x_of(percentile: float) -> float:
    return 1 / max(1 - percentile / 100, 1e-7)


def pyplot():
    """matplotlib, imported only to draw: the rest of this file is plain Python
    that the unit tests (which run without matplotlib) import."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def latency_figure(rows: list[dict], title: str, path: str, subtitle: str) -> bool:
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator
    rows = [row for row in rows if any(run.get("latency_curve_us") for runs in row["runs"].values() for run in runs)]
    if not rows:
        return False
    plt = pyplot()
    columns = min(len(rows), 3)
    lines = (len(rows) + columns - 1) // columns
    figure, axes = plt.subplots(lines, columns, figsize=(5.2 * columns, 3.8 * lines), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, row in enumerate(rows):
        ax = axes[index // columns][index % columns]
        for target_index, (target, runs) in enumerate(row["runs"].items()):
            colour = colours[target_index % len(colours)]
            for run_index, run in enumerate(runs):
                curve = [p for p in run.get("latency_curve_us") or [] if p["percentile"] < 100]
                if not curve:
                    continue
                ax.plot([x_of(p["percentile"]) for p in curve], [p["us"] for p in curve], color=colour,
                        linewidth=1, alpha=0.8, label=target if run_index == 0 else None)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(FixedLocator([x_of(p) for p in NINES]))
        ax.xaxis.set_major_formatter(FixedFormatter([f"{p:g}%" for p in NINES]))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlim(1, x_of(99.999))
        ax.set_xlabel("percentile")
        ax.set_ylabel("latency, us")
        ax.set_title(row["workload"], fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    for index in range(len(rows), lines * columns):
        axes[index // columns][index % columns].axis("off")
    figure.suptitle(f"{title}: latency by percentile, one line per round\n{subtitle}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def sections(results: dict) -> list[tuple[str, str, list[dict]]]:
    """(file name part, title, rows) of every measured section: node, proxy, or each
    thread count of a sweep."""
    found = [(part, title, results[part]) for part, title in PARTS.items() if results.get(part)]
    for key, rows in (results.get("sweep") or {}).items():
        found.append(("sweep-" + key.replace(" ", "").replace("-", ""), f"thread sweep, {key}", rows))
    return found


def ratio_entries(results: dict) -> list[tuple[str, dict]]:
    entries = []
    for _, title, rows in sections(results):
        prefix = f"{title}: " if title.startswith("thread sweep") else ""
        for row in rows:
            for target, by_key in (row.get("ratios") or {}).items():
                for key, ratio in by_key.items():
                    if ratio["median"] is None:
                        continue
                    label = f"{prefix}{row['workload']} [{row['generator']}] {target}: {RATIO_LABELS.get(key, key)}"
                    entries.append((label, ratio))
    return entries


def ratio_figure(results: dict, path: str, subtitle: str) -> bool:
    entries = ratio_entries(results)
    if not entries:
        return False
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullFormatter
    plt = pyplot()
    figure, ax = plt.subplots(figsize=(11, 0.28 * len(entries) + 1.6))
    for y, (label, ratio) in enumerate(reversed(entries)):
        colour = "tab:blue" if ratio["headline"] else "tab:grey"
        ax.plot([ratio["min"], ratio["max"]], [y, y], color=colour, linewidth=3, alpha=0.5)
        ax.plot([ratio["median"]], [y], "o", color=colour)
        note = f"{ratio['median']:.2f}x" + ("" if ratio["headline"] else "  FLAGGED: " + ", ".join(ratio["flags"]))
        ax.annotate(note, (ratio["max"], y), xytext=(6, -3), textcoords="offset points", fontsize=7, color=colour)
    ax.set_yticks(range(len(entries)))
    ax.set_yticklabels([label for label, _ in reversed(entries)], fontsize=7)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    low = min(min(r["min"] for _, r in entries), 0.9)
    high = max(max(r["max"] for _, r in entries), 1.1)
    ticks = [2.0 ** k for k in range(math.floor(math.log2(low)), math.ceil(math.log2(high)) + 1)]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FixedFormatter([f"{t:g}x" for t in ticks]))
    ax.xaxis.set_minor_formatter(NullFormatter())
    # Room on the right for the labels written after each bar.
    ax.set_xlim(low / 1.1, high * 3)
    ax.set_xlabel("ours / theirs (median and min-max over rounds; ops/s: higher is better, p99 and CPU: lower)")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    ax.set_title(f"Ratios, blue = headline, grey = flagged\n{subtitle}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else "out/bench/results.json"
    with open(path) as f:
        results = json.load(f)
    folder = os.path.dirname(os.path.abspath(path))
    subtitle = "\n".join(textwrap.wrap(f"{results['date']}, {results['machine']}: {results['command']}", 90))
    # A picture left from an earlier run would pass for this one's.
    for stale in os.listdir(folder):
        if stale.endswith(".png") and (stale.startswith("latency-") or stale == "ratios.png"):
            os.remove(os.path.join(folder, stale))
    written = []
    for name, title, rows in sections(results):
        target = os.path.join(folder, f"latency-{name}.png")
        if latency_figure(rows, title, target, subtitle):
            written.append(target)
    target = os.path.join(folder, "ratios.png")
    if ratio_figure(results, target, subtitle):
        written.append(target)
    for name in written:
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
