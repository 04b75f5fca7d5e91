"""Load on the host that the benchmark did not make.

The machine is shared: other work can take a core in the middle of a run and
change every figure of it. Around each run we read the host's CPU time
(/proc/stat) and subtract what we know is ours: the processes under test
(/proc/<pid>/stat), the load generator and perf (reaped children, from
getrusage RUSAGE_CHILDREN) and this script (RUSAGE_SELF). What is left is
foreign, in cores busy on average over the window. Steal time (the
hypervisor running someone else on our vCPU) is reported beside it.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, asdict

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


def host_jiffies() -> tuple[int, int, int]:
    """(busy, irq, steal) jiffies of all CPUs since boot.

    Busy is everything but idle, iowait and steal. It includes interrupt and
    softirq time: this kernel charges softirq work done in a task's context
    (most of loopback TCP) to that task's stime too, so /proc/<pid>/stat of
    our processes already holds it (measured: host busy without irq + irq
    equals our processes' CPU to within 1%). The irq part is also returned
    alone for the record."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq, irq + softirq, steal


def load_average() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def own_seconds() -> float:
    """CPU of this script and of the children it has reaped (generator, perf)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


@dataclass
class HostLoad:
    """One window: cores busy on average, split into ours and foreign."""
    seconds: float
    host_cores: float
    ours_cores: float
    foreign_cores: float
    irq_cores: float
    steal_cores: float
    load_average: float

    def as_dict(self) -> dict:
        return {k: round(v, 3) for k, v in asdict(self).items()}


class HostWatch:
    """Brackets a window; `tier_cpu` returns the CPU seconds of the processes under test."""

    def __init__(self, tier_cpu):
        self.tier_cpu = tier_cpu

    def start(self) -> "HostWatch":
        self.loadavg = load_average()
        self.t0 = time.monotonic()
        self.busy0, self.irq0, self.steal0 = host_jiffies()
        self.tier0 = self.tier_cpu()
        self.own0 = own_seconds()
        return self

    def stop(self) -> HostLoad:
        busy1, irq1, steal1 = host_jiffies()
        tier1 = self.tier_cpu()
        own1 = own_seconds()
        wall = max(time.monotonic() - self.t0, 1e-3)
        host = (busy1 - self.busy0) / CLOCK_TICKS
        self.tier_seconds = tier1 - self.tier0
        ours = self.tier_seconds + (own1 - self.own0)
        # Jiffy counters tick at 100 Hz: a few ticks either way are rounding, not load.
        foreign = max(host - ours, 0.0)
        return HostLoad(seconds=wall, host_cores=host / wall, ours_cores=ours / wall, foreign_cores=foreign / wall,
                        irq_cores=(irq1 - self.irq0) / CLOCK_TICKS / wall,
                        steal_cores=(steal1 - self.steal0) / CLOCK_TICKS / wall, load_average=self.loadavg)


def quiet_check(tier_cpu, seconds: float = 0.5) -> HostLoad:
    """The host with the targets idle, just before a run: anything busy now is not ours."""
    watch = HostWatch(tier_cpu).start()
    time.sleep(seconds)
    return watch.stop()
