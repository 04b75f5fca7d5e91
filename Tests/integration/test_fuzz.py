"""The fuzz stage: bounded, seeded, MEMCLUSTER_FUZZ_SECONDS (default 60) in all.
scripts/test runs it as a step of its own (marker `fuzz`).

1. Isolation, against a node (test_isolation_node) and through the proxy in
   front of 3 nodes with replicas 2 and the default policies
   (test_isolation_proxy): CLIENTS concurrent clients, each with its own key
   space and tag, send valid requests of every kind mixed with hostile input
   (fuzz.Gen: NUL bytes, CR without LF, every command with every token
   broken, wrong and huge data lengths, over-long lines, garbage, binary
   bytes, half-closes, resets, quit after noreply, multi-gets naming a 64 KiB
   value 1500-2000 times). Every byte a client reads is checked for other
   clients' tags and keys; every valid batch is compared with the client's
   model (fuzz.Gen, exact where the model can predict, see fuzz.py). Then:
   every process alive, `stats` answers, peak RSS under a bound, the
   server's curr_connections back to its baseline, no eviction (the models
   assume none), the proxy's nodes all `up`.
2. Differential (test_differential_fuzz): the sweep (every command of
   fuzz.SWEEP_COMMANDS with every token broken, with and without -C), then
   seeded random streams (valid and hostile), each on a fresh connection to
   a fresh memcached 1.6.18 and a fresh node with the same flags, replies
   compared byte for byte after corpus.py's normalizations; the README's
   deliberate differences are excluded in fuzz.diff_adjust. A difference is
   shrunk and printed in corpus format.

Share of the time: node isolation 25%, proxy isolation 35%, differential
40%. Seed: MEMCLUSTER_FUZZ_SEED (printed in the header, in every failure and
in the summary line); the same seed gives the same request streams (the
interleaving of the clients depends on scheduling). With
MEMCLUSTER_FUZZ_DUMP set (scripts/test: out/fuzz), a failing test writes its
findings there with every byte sent and received.
"""

from __future__ import annotations

import os
import re
import threading
import time

import pytest

import fuzz
import harness
from conftest import fuzz_seconds, fuzz_seed

# A longer MEMCLUSTER_FUZZ_SECONDS gets a longer per-test timeout than the
# suite's 300 s: the largest share, the time after the deadline to finish
# (90 s) and the shrinking (45 s), with room to spare.
pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(max(300, int(fuzz_seconds() * 0.4 + 240)))]

CLIENTS = 12
NODE_MB = 64
# RSS allowance over -m for a node (as test_robustness.py), and for the proxy
# (which holds no items: its buffers, the Swift runtime and allocator slack).
# A huge multi-get (HUGE_REPLY_MB) must not be buffered whole.
NODE_RSS_OVERHEAD_MB = 48
PROXY_RSS_MB = 96
HUGE_GETS = 3                           # multi-gets of one big key, per run
HUGE_COUNT = (1500, 2000)               # times the 64 KiB key is named: ~100-130 MB of reply
# The proxy's defaults (examples/proxy.yaml), not the suite's fast health
# settings, except a longer request timeout: on a loaded 2-core machine a
# node can take over a second to answer, and a timed-out write marks it down
# (then flushes it), which is not what this test is about. A node marked down
# during the fuzz is reported.
DEFAULT_HEALTH = {"request_timeout_ms": 5000, "connect_timeout_ms": 1000, "failure_limit": 2,
                  "probe_initial_ms": 200, "probe_max_ms": 5000}


# --------------------------------------------------------------------------
# Isolation
# --------------------------------------------------------------------------

class RssSampler:
    """Peak VmRSS of each process, sampled every 0.2 s on a thread."""

    def __init__(self, procs: dict):
        self.procs = procs
        self.peak = {name: 0 for name in procs}
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop_flag.is_set():
            for name, srv in self.procs.items():
                try:
                    self.peak[name] = max(self.peak[name], srv.rss_kib())
                except (OSError, KeyError):
                    pass
            self.stop_flag.wait(0.2)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        self.thread.join(timeout=5)


def run_clients(addr, seconds: float, seed: int, salt: int):
    findings = fuzz.Findings()
    registry: dict = {}
    huge = fuzz.HugeGate(HUGE_GETS)
    deadline = time.monotonic() + seconds
    clients = [fuzz.IsolationClient(cid, addr, seed * 7919 + salt * 101 + cid, deadline, findings,
                                    registry, huge, huge_count=HUGE_COUNT)
               for cid in range(1, CLIENTS + 1)]
    threads = [threading.Thread(target=c.run, name=f"fuzz-client-{c.cid}", daemon=True) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(0.1, deadline + 90 - time.monotonic()))
    stuck = [c.cid for c, t in zip(clients, threads) if t.is_alive()]
    return findings, clients, stuck


def _baseline(client) -> int:
    """curr_connections with only `client` open: the least of a few counts,
    as the start-up check's connection may still be closing."""
    counts = []
    for _ in range(5):
        counts.append(int(client.stats()["curr_connections"]))
        time.sleep(0.05)
    return min(counts)


def _wait_connections(client: harness.TextClient, want: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    cur = int(client.stats()["curr_connections"])
    while cur > want and time.monotonic() < deadline:
        time.sleep(0.1)
        cur = int(client.stats()["curr_connections"])
    return cur


def _b(x: bytes, n: int | None = 600) -> str:
    if n is None:
        return repr(bytes(x))
    s = repr(bytes(x[:n]))
    return s + (f" ...(+{len(x) - n} bytes)" if len(x) > n else "")


def format_findings(findings: fuzz.Findings, per_kind: int = 3, limit: int | None = 1) -> str:
    """The findings by class, `per_kind` of each; bytes cut to a few hundred
    (limit=None: in full)."""
    def b(x, n):
        return _b(x, None if limit is None else n)

    out = ["findings by class: " + ", ".join(f"{k}: {n}" for k, n in sorted(findings.counts.items()))]
    shown: dict = {}
    for f in findings.items:
        k = f["kind"]
        if shown.get(k, 0) >= per_kind:
            continue
        shown[k] = shown.get(k, 0) + 1
        out.append(f"--- {k}: client {f['client']:02d} connection #{f['conn']}: {f['detail']}")
        if f.get("context"):
            out.append(f"    received: {b(f['context'], 400)}")
        if f.get("batch"):
            out.append(f"    sent (this batch): {b(f['batch'], 900)}")
        if f.get("expected"):
            out.append(f"    model expected, request by request: {f['expected']}")
        if f.get("reply"):
            out.append(f"    got: {b(f['reply'], 900)}")
        for label in ("sent", "other_sent"):
            if f.get(label):
                who = "this client" if label == "sent" else "the other client"
                out.append(f"    last sends of {who} (t, connection, what, bytes):")
                for t, s, w, d in f[label]:
                    out.append(f"      {t:.3f} #{s} {w}: {b(d, 300)}")
    return "\n".join(out)


def summarize(clients) -> str:
    tot: dict = {}
    for c in clients:
        for k, v in c.stats.items():
            tot[k] = tot.get(k, 0) + v
    return ", ".join(f"{k}={v}" for k, v in tot.items())


def dump(label: str, seed: int, text: str) -> str:
    """Writes the full findings to MEMCLUSTER_FUZZ_DUMP/<label>-<seed>.txt
    when that folder is set (scripts/test: out/fuzz); returns a note."""
    folder = os.environ.get("MEMCLUSTER_FUZZ_DUMP", "")
    if not folder:
        return ""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{label}-{seed}.txt")
    with open(path, "w") as f:
        f.write(text + "\n")
    return f"\n(everything, bytes in full: {path})"


def check_isolation_run(label, seed, seconds, findings, clients, stuck, peak, limits, extra=""):
    info = (f"{label}: MEMCLUSTER_FUZZ_SEED={seed} MEMCLUSTER_FUZZ_SECONDS={fuzz_seconds()} "
            f"({seconds:.0f} s here), {len(clients)} clients; {summarize(clients)}; "
            f"peak RSS KiB {peak}")
    print(info)
    fuzz.record(f"{label} isolation", seconds, sum(c.stats["requests"] for c in clients),
                sum(c.stats["checked"] for c in clients), findings.total(), 0,
                f"{len(clients)} clients, {sum(c.stats['hostile'] for c in clients)} hostile")
    problems = []
    if stuck:
        problems.append(f"client threads still running 90 s after the deadline: {stuck}")
    for name, limit in limits.items():
        if peak.get(name, 0) > limit:
            problems.append(f"{name}: peak RSS {peak[name]} KiB over the bound {limit} KiB")
    if extra:
        problems.append(extra)
    if problems or findings.total():
        note = dump(label, seed, "\n".join([info, *problems, format_findings(findings, per_kind=60, limit=None)]))
        pytest.fail("\n".join([info, *problems, format_findings(findings)]) + note)
    checked = sum(c.stats["checked"] for c in clients)
    hostile = sum(c.stats["hostile"] for c in clients)
    assert checked >= 50 * len(clients), f"too few valid requests checked ({info})"
    assert hostile >= 10 * len(clients), f"too little hostile input ({info})"
    assert sum(c.stats["huge"] for c in clients) >= 1, f"no huge multi-get was sent ({info})"


def test_isolation_node(server_factory):
    seed, seconds = fuzz_seed(), fuzz_seconds() * 0.25
    srv = server_factory(["-m", str(NODE_MB), "-c", "1024"])
    with harness.TextClient(srv.addr) as probe:
        baseline = _baseline(probe)
        with RssSampler({"node": srv}) as rss:
            findings, clients, stuck = run_clients(srv.addr, seconds, seed, 1)
        problems = []
        if not srv.alive():
            fuzz.record("node isolation", seconds, sum(c.stats["requests"] for c in clients),
                        sum(c.stats["checked"] for c in clients), findings.total(), 1)
            pytest.fail(f"the node died (MEMCLUSTER_FUZZ_SEED={seed}); log:\n{srv.log()}\n"
                        + format_findings(findings))
        st = probe.stats()
        if int(st.get("evictions", "0")):
            problems.append(f"evictions={st['evictions']}: the models assume none")
        cur = _wait_connections(probe, baseline, 10)
        if cur > baseline:
            problems.append(f"curr_connections {cur}, baseline {baseline}: connections leaked")
        with harness.TextClient(srv.addr) as fresh:
            if fresh.set("after-fuzz", b"ok") != b"STORED" or fresh.get("after-fuzz") != b"ok":
                problems.append("a fresh connection cannot set/get after the fuzz")
    check_isolation_run("node", seed, seconds, findings, clients, stuck, rss.peak,
                        {"node": (NODE_MB + NODE_RSS_OVERHEAD_MB) * 1024}, "\n".join(problems))


def test_isolation_proxy(cluster_factory):
    seed, seconds = fuzz_seed(), fuzz_seconds() * 0.35
    cl = cluster_factory(n=3, replicas=2, options=DEFAULT_HEALTH, node_flags=["-m", str(NODE_MB), "-c", "1024"])
    procs = {"proxy": cl.proxy, **{f"node{i}": n for i, n in enumerate(cl.nodes)}}
    probe = cl.client()
    baseline = _baseline(probe)
    with RssSampler(procs) as rss:
        findings, clients, stuck = run_clients(cl.addr, seconds, seed, 2)
    dead = [name for name, p in procs.items() if not p.alive()]
    if dead:
        fuzz.record("proxy isolation", seconds, sum(c.stats["requests"] for c in clients),
                    sum(c.stats["checked"] for c in clients), findings.total(), len(dead))
        text = (f"died during the fuzz: {dead} (MEMCLUSTER_FUZZ_SEED={seed})\n{cl.describe()}\n")
        note = dump("proxy", seed, text + format_findings(findings, per_kind=60, limit=None))
        pytest.fail(text + format_findings(findings) + note)
    problems = []
    states = cl.node_states()
    if any(s != "up" for s in states):
        problems.append(f"node states after the fuzz: {states} (clients' input took a node down)")
    st = cl.stats("nodes")
    downs = {k: v for k, v in st.items() if re.search(r"(down|fail|timeout|flush)", k) and v not in ("0", "up")}
    if downs:
        problems.append(f"stats nodes: {downs}")
    for i in range(len(cl.nodes)):
        ns = cl.node_client(i).stats()
        if int(ns.get("evictions", "0")):
            problems.append(f"node{i}: evictions={ns['evictions']}: the models assume none")
    cur = _wait_connections(probe, baseline, 10)
    if cur > baseline:
        problems.append(f"proxy curr_connections {cur}, baseline {baseline}: connections leaked")
    fresh = cl.client()
    if fresh.set("after-fuzz", b"ok") != b"STORED" or fresh.get("after-fuzz") != b"ok":
        problems.append("a fresh connection cannot set/get through the proxy after the fuzz")
    limits = {"proxy": PROXY_RSS_MB * 1024,
              **{f"node{i}": (NODE_MB + NODE_RSS_OVERHEAD_MB) * 1024 for i in range(len(cl.nodes))}}
    check_isolation_run("proxy", seed, seconds, findings, clients, stuck, rss.peak, limits, "\n".join(problems))


# --------------------------------------------------------------------------
# Differential
# --------------------------------------------------------------------------

MAX_CASES = 5000
SHRINK_SECONDS = 45        # in all, only when something differs
SHRINK_DISTINCT = 3        # differences shrunk and printed (one per signature)


def signature(res: fuzz.DiffResult) -> tuple:
    """The first differing reply line of each side, numbers masked: one per
    kind of difference."""
    if res.error or res.tgt_dead:
        return ("error" if res.error else "target died",)
    la, lb = res.ref.split(b"\n"), res.tgt.split(b"\n")
    for x, y in zip(la + [b"<end>"], lb + [b"<end>"]):
        if x != y:
            return (re.sub(rb"\d+", b"#", x)[:60], re.sub(rb"\d+", b"#", y)[:60])
    return ("length",)


def describe_diff(case: fuzz.DiffCase, res: fuzz.DiffResult, seed: int, reproduced: str) -> str:
    import corpus
    text = fuzz.corpus_text(case, f"found by test_fuzz.py (MEMCLUSTER_FUZZ_SEED={seed}, {case.name}); "
                                  f"reproduces {reproduced}")
    ok = fuzz.corpus_payload(text) == fuzz.expected_corpus_payload(case)
    cc = corpus.Case(name=case.name, file="fuzz", line=0, flags=case.flags, split=case.split)
    cc.segments = [([fuzz.expected_corpus_payload(case)], 0.0)]
    out = [f"=== difference: {case.name} ({len(case.pieces)} pieces, flags {case.flags}, split {case.split})"]
    if res.error:
        out.append(f"error: {res.error}")
    if res.tgt_dead:
        out.append(f"the target died; its log:\n{res.tgt_dead[-2000:]}")
    out.append("raw bytes sent (`mg fuzz-barrier ...`: the client waited for its reply before going on): "
               + repr(fuzz.expected_corpus_payload(case)))
    out.append("corpus case (add to Tests/integration/corpus/*.txt):" + ("" if ok else " [escaping self-check FAILED]"))
    out.append(text)
    out.append(corpus.diff_report(cc, res.ref, res.tgt))
    return "\n".join(out)


def test_differential_fuzz(reference_bin, target_bin):
    seed, seconds = fuzz_seed(), fuzz_seconds() * 0.40
    start = time.monotonic()
    deadline = start + seconds
    found: dict = {}
    counts: dict = {}
    n = 0
    pieces = 0
    died = 0
    unstable = 0          # cases memcached itself answers differently from run to run
    # the sweep (every command with every token broken), with and without
    # CAS, then seeded random streams until the time is up
    sweep = fuzz.sweep_cases()
    cases = [*sweep, *(fuzz.DiffCase(c.name + "_C", [p for p in c.pieces if b"flush_all" not in p.data], ["-C"])
                       for c in sweep)]
    swept = len(cases)
    index = 0
    while time.monotonic() < deadline and n < MAX_CASES:
        if cases:
            case = cases.pop(0)
        else:
            case = fuzz.diff_case(seed, index)
            index += 1
        n += 1
        pieces += len(case.pieces)
        res = fuzz.run_diff(case, reference_bin, target_bin)
        if not res.same and not res.error and not res.tgt_dead \
                and not fuzz.reference_stable(case, reference_bin, res.ref):
            unstable += 1
            continue
        if not res.same:
            died += bool(res.tgt_dead)
            sig = signature(res)
            counts[sig] = counts.get(sig, 0) + 1
            found.setdefault(sig, (case, res))
    elapsed = time.monotonic() - start
    info = (f"differential: MEMCLUSTER_FUZZ_SEED={seed}, {n} cases ({min(n, swept)} of the sweep's {swept}, "
            f"{max(0, n - swept)} random), {pieces} pieces in {elapsed:.0f} s, "
            f"{sum(counts.values())} differing cases of {len(found)} kinds; {unstable} left out, "
            f"memcached answering them differently from run to run")
    print(info)
    fuzz.record("node differential", elapsed, pieces, pieces, sum(counts.values()), died,
                f"{n} cases against memcached, {min(n, swept)} of them the sweep; {unstable} left out as "
                f"memcached answers them differently from run to run")
    if not found:
        assert n >= swept + 20, f"too few cases ran ({info})"
        return
    reports = []
    shrink_deadline = time.monotonic() + SHRINK_SECONDS
    for sig, (case, res) in list(found.items())[:SHRINK_DISTINCT]:
        def fails(c, sig=sig):
            r = fuzz.run_diff(c, reference_bin, target_bin)
            return not r.same and signature(r) == sig
        small, trials = fuzz.shrink(case, fails, min(shrink_deadline, time.monotonic() + 20))
        again = [fuzz.run_diff(small, reference_bin, target_bin) for _ in range(2)]
        # Only a rerun with the same kind of difference reproduces it (a case
        # that depends on timing can differ the other way round), and the
        # difference printed is of the kind counted.
        alike = [r for r in again if not r.same and signature(r) == sig]
        other = sum(1 for r in again if not r.same) - len(alike)
        reproduced = f"{1 + len(alike)}/3 (shrunk in {trials} runs)" + \
            (f"; {other} rerun(s) differed otherwise" if other else "")
        final = alike[0] if alike else res
        if not alike:
            small = case
        reports.append(describe_diff(small, final, seed, reproduced) + f"\n(seen in {counts[sig]} cases)")
    more = [f"  {sig!r}: {c} cases" for sig, c in counts.items()]
    text = (info + "\nkinds (first differing line, memcached vs target, numbers masked):\n"
            + "\n".join(more) + "\n\n" + "\n\n".join(reports))
    pytest.fail(text + dump("differential", seed, text))
