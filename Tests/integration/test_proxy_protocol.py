"""The proxy speaks memcached's protocol: the same bytes sent to a real
memcached and to the proxy (3 fresh nodes, replicas 2) get the same reply
bytes, including everything that must NOT be written back (noreply, meta
`q`) and memcached's answers to malformed input, after which the connection
stays usable.

Cases: proxy_corpus/*.txt (written for the proxy: noreply and meta quiet
mode over keys on every node, errors followed by normal traffic, too-large
values removing the old copy on every replica) and the node's differential
corpus (corpus/*.txt), minus the cases listed in NOT_THROUGH_PROXY with the
reason. Comparison, normalizations and reporting are corpus.py's.
"""

from __future__ import annotations

import glob
import os
import re
import threading

import pytest

import corpus
import harness
import proxy_harness as ph

HERE = os.path.dirname(os.path.abspath(__file__))

# Corpus cases that cannot mean the same through a proxy, and why.
NOT_THROUGH_PROXY = {
    "stats_simple_subcommands": "stats is the proxy's own (test_proxy_stats.py)",
    "stats_subcommands_framing": "stats is the proxy's own (test_proxy_stats.py)",
    **{name: "per-prefix stats are each node's own" for name in (
        "detail_subcommand_forms", "detail_counts_classic_commands", "detail_off_keeps_counts_reset_clears",
        "detail_many_prefixes_in_memcached_order", "detail_prefix_matches_longer_entry_in_its_bucket",
        "detail_long_prefix")},
    "me_forms": "`me` shows one node's internals",
    "cas_unique_sequence_across_commands": "CAS uniques come from each node's own counter",
    # lru_crawler is node administration: the proxy answers it as a server
    # holding no items (README, "Deliberate differences").
    **{c.name: "lru_crawler acts on one node" for c in corpus.parse_file(os.path.join(HERE, "corpus", "metadump.txt"))},
}
# CAS uniques come from the node holding the key, and each node counts on
# its own (which node holds a key depends on the ports of the run), so the
# unique numbers shown by gets and meta `c` are masked in the comparison. What
# they mean is still compared: every cas/`C` that uses one must get the same
# answer as on memcached.
_CAS_IN_VALUE = re.compile(rb"^(VALUE \S+ \d+ \d+) \d+\r$", re.M)
_CAS_IN_META = re.compile(rb"^((?:VA \d+|HD|EN|NS|EX|NF)(?: [^\r\n]*)?) c\d+(?=[ \r])", re.M)


def mask_cas(data: bytes) -> bytes:
    data = _CAS_IN_VALUE.sub(rb"\1 <cas>\r", data)
    prev = None
    while prev != data:
        prev = data
        data = _CAS_IN_META.sub(rb"\1 c<cas>", data)
    return data


def _eligible(case: corpus.Case) -> bool:
    # server flags (-I, -C, -F, -A...) and deliberate node differences are
    # about one server, not the proxy
    return not case.flags and not case.differs and case.name not in NOT_THROUGH_PROXY


PROXY_CASES = [c for p in sorted(glob.glob(os.path.join(HERE, "proxy_corpus", "*.txt")))
               for c in corpus.parse_file(p)]
NODE_CASES = [c for c in corpus.load_all() if _eligible(c)]


def run_against_both(case: corpus.Case, reference_bin: str):
    results: dict = {}

    def ref_side():
        srv = None
        try:
            srv = harness.start_server(reference_bin, [])
            results["ref"] = corpus.run_case(case, srv.addr)
        except BaseException as e:  # noqa: BLE001
            results["ref"] = e
        finally:
            if srv is not None:
                srv.stop()

    def proxy_side():
        cl = None
        try:
            cl = ph.Cluster(n=3, replicas=2)
            results["tgt"] = corpus.run_case(case, cl.addr)
            if not cl.proxy.alive():
                results["tgt_dead"] = cl.describe()
        except BaseException as e:  # noqa: BLE001
            results["tgt"] = e
        finally:
            if cl is not None:
                cl.stop()

    threads = [threading.Thread(target=ref_side), threading.Thread(target=proxy_side)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def check_case(case: corpus.Case, reference_bin: str):
    res = run_against_both(case, reference_bin)
    for side, label in (("ref", "reference memcached"), ("tgt", "proxy cluster")):
        r = res.get(side)
        if isinstance(r, BaseException):
            raise AssertionError(f"{label} failed in case {case.name}: {r!r}") from r
        assert r is not None, f"{label} did not finish case {case.name} in time"
    if "tgt_dead" in res:
        pytest.fail(f"proxy died during {case.name}:\n{res['tgt_dead']}")
    a = corpus.normalize(res["ref"].shown(), case.norms)
    b = corpus.normalize(res["tgt"].shown(), case.norms)
    a, b = mask_cas(a), mask_cas(b)
    same, note = corpus.compare(a, b)
    if note:
        print(f"{case.name}: tolerated {note}")
    assert same, "memcached (-) vs proxy (+)\n" + corpus.diff_report(case, a, b)


def test_corpora_loaded():
    assert len(PROXY_CASES) >= 8
    assert len(NODE_CASES) >= 90, len(NODE_CASES)


@pytest.mark.parametrize("case", PROXY_CASES, ids=[c.name for c in PROXY_CASES])
def test_proxy_case_same_bytes_as_memcached(case, reference_bin):
    check_case(case, reference_bin)


@pytest.mark.parametrize("case", NODE_CASES, ids=[c.name for c in NODE_CASES])
def test_node_corpus_case_through_proxy(case, reference_bin):
    check_case(case, reference_bin)


def test_noreply_writes_nothing_back(cluster):
    """After noreply commands (and meta q successes) on keys on every node,
    nothing at all arrives, even after a quiet second; then mn answers MN."""
    c = cluster.raw()
    payload = b"".join(b"set nr%d 0 0 1 noreply\r\nx\r\n" % i for i in range(60))
    payload += b"".join(b"ms mq%d 1 q\r\ny\r\n" % i for i in range(60))
    payload += b"".join(b"delete nr%d noreply\r\nmd mq%d q\r\n" % (i, i) for i in range(0, 60, 3))
    payload += b"".join(b"incr nope%d 1 noreply\r\nmg nope%d v q\r\n" % (i, i) for i in range(20))
    c.send(payload)
    extra = c.read_until(None, quiet=1.0, timeout=2.0)
    assert extra == b"", f"proxy wrote {extra[:300]!r} for noreply/quiet commands"
    assert c.request(b"mn\r\n") == b"MN\r\n"
    found = ph.multi_get(c, [f"nr{i}" for i in range(60)] + [f"mq{i}" for i in range(60)])
    assert len(found) == 80, f"{len(found)} keys found, 80 expected (120 set, 40 deleted)"


# Where the proxy's answer differs from a fresh memcached's (README,
# "Deliberate differences"): the request, the proxy's exact answer, and what
# memcached 1.6.18 answers instead on a fresh server.
ADMIN_DIFFERENCES = [
    # no slab classes to take a page from
    (b"slabs reassign 1 2\r\n", b"BADCLASS invalid src or dst class id\r\n",
     b"NOSPARE source class has no spare pages\r\n"),
    # memcached's crawler runs from the start, so enabling it again fails
    (b"lru_crawler enable\r\n", b"OK\r\n", b"ERROR failed to start lru crawler thread\r\n"),
    # memcached 1.6.18 has no mgdump; sizes tracking stays off
    (b"stats sizes_enable\r\n", b"STAT sizes_status disabled\r\nEND\r\n", b"STAT sizes_status enabled\r\n"),
]


@pytest.mark.parametrize("request_bytes,proxy_answer,memcached_answer", ADMIN_DIFFERENCES,
                         ids=[r[0].split(b"\r")[0].decode() for r in ADMIN_DIFFERENCES])
def test_admin_answers_where_the_proxy_differs(cluster, reference_bin, request_bytes, proxy_answer, memcached_answer):
    c = cluster.raw()
    c.send(request_bytes + b"mn\r\n")
    assert c.read_until(b"MN\r\n") == proxy_answer + b"MN\r\n"
    ref = harness.start_server(reference_bin, [])
    try:
        with harness.RawConn(ref.addr) as m:
            m.send(request_bytes + b"mn\r\n")
            assert m.read_until(b"MN\r\n") == memcached_answer + b"MN\r\n"
    finally:
        ref.stop()


def test_dumps_and_watch_answer_and_the_connection_goes_on(cluster):
    """memcached turns the connection into a stream for a metadump or watch
    (and refuses them after other pipelined commands); the proxy answers at
    once, pipelined or not, and goes on with the next request."""
    c = cluster.raw()
    c.send(b"set k 0 0 1\r\nx\r\nlru_crawler metadump all\r\nlru_crawler metadump hash\r\n"
           b"lru_crawler metadump 1,2\r\nlru_crawler metadump 99\r\nlru_crawler crawl all\r\nlru_crawler crawl all\r\n"
           b"lru_crawler crawl 1,2,3\r\nwatch\r\nwatch fetchers mutations\r\nget k\r\n")
    assert c.read_until(b"VALUE k 0 1\r\nx\r\nEND\r\n") == (
        b"STORED\r\nEND\r\nEND\r\nEND\r\nBADCLASS invalid class id\r\nOK\r\nOK\r\nOK\r\n"
        b"CLIENT_ERROR watch commands not allowed\r\nCLIENT_ERROR watch commands not allowed\r\n"
        b"VALUE k 0 1\r\nx\r\nEND\r\n")


def test_cache_memlimit_leaves_the_nodes_alone(cluster):
    before = [cluster.node_client(i).stats()["limit_maxbytes"] for i in range(3)]
    c = cluster.client()
    assert c.line("cache_memlimit 100") == b"OK"
    assert c.line("cache_memlimit 7") == b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m"
    assert [cluster.node_client(i).stats()["limit_maxbytes"] for i in range(3)] == before
