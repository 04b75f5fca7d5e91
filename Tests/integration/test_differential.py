"""Differential test: every corpus case (corpus/*.txt) is sent to a fresh
reference memcached and to a fresh target started with the same flags; the
replies must match byte for byte after the case's named normalizations
(corpus.NORMALIZERS; `version` always) and a one-tick tolerance on meta
TTL/age numbers (corpus.compare). Connection closes must match too.

A case marked `@differs` records a deliberate difference (listed in the
README): the target must then answer exactly the case's `@target` bytes, and
memcached must still answer something else, so the note stays true.

Run against MEMCLUSTER_TARGET=memcached this compares memcached with
itself: it must pass, which shows the normalizations hide nothing that two
identical servers do not already agree on.
"""

import os

import pytest

import corpus

CASES = corpus.load_all()


def test_corpus_is_large_enough():
    assert len(CASES) >= 60, f"only {len(CASES)} corpus cases"
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_same_bytes_as_memcached(case, reference_bin, target_bin):
    assert_same_as_memcached(case, corpus.run_pair(case, reference_bin, target_bin))


def assert_same_as_memcached(case: corpus.Case, res: dict) -> None:
    """The check of one case's run_pair results (also over TLS, in
    test_tls_compatibility.py)."""
    for side in ("ref", "tgt"):
        r = res.get(side)
        if isinstance(r, BaseException):
            label = "reference memcached" if side == "ref" else "target"
            raise AssertionError(f"{label} failed in case {case.name}: {r!r}") from r
        assert r is not None, f"{side} did not finish case {case.name} in time"
    ref, tgt = res["ref"], res["tgt"]
    if "tgt_alive" in res:
        pytest.fail(f"target did not exit after {case.name}; its log:\n{res['tgt_alive']}")
    if "tgt_dead" in res and "ref_dead" not in res:
        pytest.fail(f"target died during {case.name}; its log:\n{res['tgt_dead']}")
    a = corpus.normalize(ref.shown(), case.norms)
    b = corpus.normalize(tgt.shown(), case.norms)
    # Against memcached itself (MEMCLUSTER_TARGET=memcached) a case recording a
    # deliberate difference of the node is compared like any other: memcached
    # must agree with itself (a skip would count as a failure, see conftest).
    if case.differs and os.environ.get("MEMCLUSTER_TARGET") != "memcached":
        expected = corpus.normalize(case.target_expected + b"VERSION x\r\n" if case.sentinel else case.target_expected, case.norms)
        assert b == expected, corpus.diff_report(case, expected, b)
        assert a != b, f"{case.name}: memcached now answers like the node; drop @differs"
        return
    same, note = corpus.compare(a, b)
    if note:
        print(f"{case.name}: tolerated {note}")
    assert same, corpus.diff_report(case, a, b)


def test_recorded_replies_cover_the_corpus():
    """The Swift tests replay every case in process (CorpusReplayTests) with
    memcached's replies recorded by record_corpus.py: the recording must be
    of the corpus as it is now."""
    import json

    import record_corpus

    with open(record_corpus.FIXTURE) as f:
        recorded = {c["name"]: c for c in json.load(f)["cases"]}
    stale = []
    for case in CASES:
        entry = recorded.pop(case.name, None)
        want = [{"lines": [record_corpus.pieces(ln) for ln in lines], "wait": wait} for lines, wait in case.segments]
        if entry is None or entry["segments"] != want or entry["flags"] != case.flags:
            stale.append(case.name)
    assert not stale and not recorded, (
        f"Tests/CacheNodeTests/Fixtures/memcached-corpus.json is out of date (changed or missing: {stale[:10]}, "
        f"no longer in the corpus: {sorted(recorded)[:10]}): run Tests/integration/record_corpus.py")
