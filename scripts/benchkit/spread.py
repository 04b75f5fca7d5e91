"""Rounds to ratios: each round runs the reference and the candidates back to
back, so a ratio is taken per round (candidate / reference of the same
round), and the rounds' ratios give the median and the spread (min-max).

A ratio is a headline only when it is trustworthy: enough rounds, rounds that
agree (spread within `max_spread` of the median), no foreign load on the
host in its runs and a generator that kept its schedule. Otherwise it is
flagged with the reasons, and printed as such."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

MIN_ROUNDS = 3


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def round_ratios(candidate_runs: list[dict], reference_runs: list[dict], key: str) -> list[float]:
    ratios = []
    for ours, theirs in zip(candidate_runs, reference_runs):
        if ours.get(key) is not None and theirs.get(key):
            ratios.append(ours[key] / theirs[key])
    return ratios


def run_busy(run: dict, threshold: float) -> bool:
    """Foreign load above `threshold` cores (or as much steal) before or during the run."""
    for window in ("host_before", "host_during"):
        host = run.get(window) or {}
        if host.get("foreign_cores", 0) > threshold or host.get("steal_cores", 0) > threshold:
            return True
    return False


@dataclass
class Ratio:
    rounds: list[float]
    median: float | None = None
    low: float | None = None
    high: float | None = None
    reasons: list[str] = field(default_factory=list)

    @property
    def headline(self) -> bool:
        return self.median is not None and not self.reasons

    @property
    def relative_spread(self) -> float | None:
        if not self.rounds or not self.median:
            return None
        return (self.high - self.low) / self.median

    def cell(self) -> str:
        if self.median is None:
            return "-"
        spread = f"{self.low:.2f}-{self.high:.2f}" if len(self.rounds) > 1 else "1 round"
        if self.headline:
            return f"{self.median:.2f}x ({spread})"
        return f"({self.median:.2f}x?) {spread} **{', '.join(self.reasons)}**"

    def as_dict(self) -> dict:
        return {"median": self.median, "min": self.low, "max": self.high, "rounds": self.rounds,
                "headline": self.headline, "flags": self.reasons}


def summarise_ratio(candidate_runs: list[dict], reference_runs: list[dict], key: str, max_spread: float,
                    busy_threshold: float) -> Ratio:
    values = round_ratios(candidate_runs, reference_runs, key)
    ratio = Ratio(values)
    if not values:
        return ratio
    ratio.median, ratio.low, ratio.high = statistics.median(values), min(values), max(values)
    if len(values) < MIN_ROUNDS:
        ratio.reasons.append(f"{len(values)} round{'s' if len(values) > 1 else ''}, no spread")
    elif ratio.relative_spread > max_spread:
        ratio.reasons.append(f"rounds disagree by {ratio.relative_spread:.0%}")
    runs = list(zip(candidate_runs, reference_runs))
    busy = sum(1 for pair in runs if any(run_busy(r, busy_threshold) for r in pair))
    if busy:
        ratio.reasons.append(f"host busy in {busy}/{len(runs)} rounds")
    behind = sum(1 for pair in runs if any(r.get("generator_behind") for r in pair))
    if behind:
        ratio.reasons.append(f"generator behind in {behind}/{len(runs)} rounds")
    return ratio
