"""Records what memcached 1.6.18 answers to every case of the differential
corpus (corpus/*.txt), for the Swift test that replays the same cases
through the node's request path in process (Tests/CacheNodeTests,
CorpusReplayTests): no socket, no node process, a clock moved by hand.

    .venv/bin/python Tests/integration/record_corpus.py    # rewrites the fixture

Run it again after adding or changing a corpus case; the integration suite
checks that the fixture and the corpus agree (test_differential.py).
"""

from __future__ import annotations

import base64
import json
import os
import sys

import corpus
import harness

FIXTURE = os.path.join(harness.REPO_ROOT, "Tests", "CacheNodeTests", "Fixtures", "memcached-corpus.json")


def pieces(data: bytes, run: int = 256) -> list[dict]:
    """`data` as pieces: {"b": base64 bytes}, {"r": byte, "n": count} for a
    run of at least `run` equal bytes, or {"blob": n, "seed": s} for the
    corpus's pseudo-random `blob(n, s)` (large values are one or the other)."""
    if len(data) > 4096:
        body, tail = (data[:-2], data[-2:]) if data.endswith(b"\r\n") else (data, b"")
        for seed in range(1, 10):
            # The first bytes decide the seed; only that one is built whole.
            if corpus._blob(64, seed) == body[:64] and corpus._blob(len(body), seed) == body:
                return [{"blob": len(body), "seed": seed}] + ([{"b": base64.b64encode(tail).decode()}] if tail else [])
    out: list[dict] = []
    start = i = 0
    while i < len(data):
        j = i
        while j < len(data) and data[j] == data[i]:
            j += 1
        if j - i >= run:
            if start < i:
                out.append({"b": base64.b64encode(data[start:i]).decode()})
            out.append({"r": data[i], "n": j - i})
            start = j
        i = j
    if start < len(data):
        out.append({"b": base64.b64encode(data[start:]).decode()})
    return out


def encode(case: corpus.Case, transcript: corpus.Transcript) -> dict:
    return {
        "name": case.name,
        "flags": case.flags,
        "split": case.split,
        "sentinel": case.sentinel,
        "norms": case.norms,
        "exits": case.exits,
        "differs": case.differs is not None,
        "target": base64.b64encode(case.target_expected).decode(),
        "segments": [{"lines": [pieces(ln) for ln in lines], "wait": wait} for lines, wait in case.segments],
        "reply": pieces(transcript.data),
        "closed": transcript.closed,
    }


def fixture_cases() -> list[corpus.Case]:
    return corpus.load_all()


def record() -> list[dict]:
    out = []
    for case in fixture_cases():
        srv = harness.start_server(harness.reference_binary(), case.flags)
        try:
            out.append(encode(case, corpus.run_case(case, srv.addr)))
        finally:
            srv.stop()
    return out


def main() -> int:
    cases = record()
    os.makedirs(os.path.dirname(FIXTURE), exist_ok=True)
    with open(FIXTURE, "w") as f:
        json.dump({"memcached": "1.6.18", "cases": cases}, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"recorded {len(cases)} cases into {FIXTURE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
