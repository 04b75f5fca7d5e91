"""Checks of the harness itself: the differential comparison is sensitive
(one byte, one CAS unique, one close), the normalizers are narrow, and the
corpus format decodes as documented. Cheap; runs with every target.
"""

import corpus
import harness


def test_compare_detects_any_byte_difference():
    a = b"STORED\r\nVALUE k 0 1 7\r\nx\r\nEND\r\n"
    for i in range(len(a)):
        b = a[:i] + bytes([a[i] ^ 1]) + a[i + 1:]
        assert corpus.compare(a, b)[0] is False, i
    assert corpus.compare(a, a + b"END\r\n")[0] is False
    assert corpus.compare(a, a[:-1])[0] is False


def test_tick_tolerance_is_narrow():
    ok = corpus.compare
    assert ok(b"VA 1 t30 c2\r\n", b"VA 1 t29 c2\r\n")[0]
    assert ok(b"HD l0 h1\r\n", b"HD l1 h1\r\n")[0]
    assert not ok(b"VA 1 t30 c2\r\n", b"VA 1 t28 c2\r\n")[0]      # two ticks
    assert not ok(b"VA 1 t-1\r\n", b"VA 1 t0\r\n")[0]              # no TTL vs TTL
    assert not ok(b"VA 1 t30 c2\r\n", b"VA 1 t30 c3\r\n")[0]       # CAS exact
    assert not ok(b"VALUE t30 0 1\r\n", b"VALUE t29 0 1\r\n")[0]   # not a meta line
    assert not ok(b"30\r\n", b"29\r\n")[0]                          # incr reply exact


def test_normalizers_touch_only_their_lines():
    n = corpus.normalize
    assert n(b"VERSION 1.6.18\r\nEND\r\n", []) == b"VERSION <v>\r\nEND\r\n"
    assert n(b"VALUE k 0 14\r\nVERSION 1.6.18\r\n", []).startswith(b"VALUE k 0 14\r\n")
    assert n(b"get VERSION x\r\n", []) == b"get VERSION x\r\n"
    me = b"ME k exp=-1 la=3 cas=5 fetch=no cls=1 size=63\r\n"
    assert n(me, ["me-times"]) == b"ME k exp=-1 la=<s> cas=5 fetch=no cls=1 size=63\r\n"
    assert n(me, ["me-layout"]) == b"ME k exp=-1 la=3 cas=5 fetch=no cls=<c> size=<n>\r\n"
    assert n(b"STAT pid 1\r\nSTAT uptime 2\r\nEND\r\n", ["stat-lines"]) == b"STAT <lines>\r\nEND\r\n"
    assert n(b"VA 4 size=63\r\nsize=63\r\n", ["me-layout"]) == b"VA 4 size=63\r\nsize=63\r\n"


def test_metadump_normalizer_sorts_each_dump_and_keeps_the_rest():
    n = corpus.normalize
    dump = (b"MN\r\nkey=b exp=1796428425 la=1796428325 cas=3 fetch=no cls=1 size=62\n"
            b"key=a exp=-1 la=1796428325 cas=1 fetch=yes cls=1 size=61\nEND\r\n")
    assert n(dump, ["metadump"]) == (b"MN\r\nkey=a exp=-1 la=<t> cas=1 fetch=yes cls=1 size=61\n"
                                     b"key=b exp-la=100 la=<t> cas=3 fetch=no cls=1 size=62\nEND\r\n")
    # Two dumps stay apart; what is not a dump line is left alone.
    two = b"key=b exp=-1 la=1 cas=2 fetch=no cls=1 size=1\nEND\r\nkey=a exp=-1 la=1 cas=1 fetch=no cls=1 size=1\nEND\r\n"
    assert n(two, ["metadump"]).index(b"key=b") < n(two, ["metadump"]).index(b"key=a")
    value = b"VALUE k 0 48\r\nkey=a exp=5 la=1 cas=1 fetch=no cls=1 size=1\r\nEND\r\n"
    assert n(value, ["metadump"]) == value
    assert n(dump, []) == dump
    ok = corpus.compare
    assert ok(n(dump, ["metadump"]), n(dump.replace(b"exp=1796428425", b"exp=1796428426"), ["metadump"]))[0]
    assert not ok(n(dump, ["metadump"]), n(dump.replace(b"exp=1796428425", b"exp=1796428427"), ["metadump"]))[0]
    assert not ok(n(dump, ["metadump"]), n(dump.replace(b"cas=3", b"cas=4"), ["metadump"]))[0]
    assert not ok(n(dump, ["metadump"]), n(dump.replace(b"fetch=yes", b"fetch=no"), ["metadump"]))[0]
    assert not ok(n(dump, ["metadump"]), n(dump.replace(b"key=a ", b"key=c "), ["metadump"]))[0]


def test_corpus_line_decoding():
    d = corpus.decode_line
    assert d("get k", "t") == b"get k\r\n"
    assert d("get k\\n", "t") == b"get k\n"
    assert d("abc\\z", "t") == b"abc"
    assert d("a\\r\\nb", "t") == b"a\r\nb\r\n"
    assert d("\\x80\\x00\\t\\\\", "t") == b"\x80\x00\t\\\r\n"
    assert d("set {{rep('k', 3)}} 0 0 1", "t") == b"set kkk 0 0 1\r\n"
    assert d("{{b64('a')}}", "t") == b"YQ==\r\n"


def test_split_bytes():
    assert harness.split_bytes(b"abcdef", None) == [b"abcdef"]
    assert harness.split_bytes(b"abcdef", 4) == [b"abcd", b"ef"]
    assert harness.split_bytes(b"abcdef", [1, 3, 3, 99]) == [b"a", b"bc", b"def"]


def test_live_differential_sees_a_real_difference(reference_bin):
    """Two real memcached processes that do differ (-C disables CAS) must
    produce a failing comparison; identical flags must not."""
    case = corpus.Case(name="selfcheck", file="-", line=0)
    case.segments = [([b"set k 0 0 1\r\n", b"x\r\n", b"gets k\r\n"], 0.0)]
    a = harness.start_server(reference_bin, [])
    b = harness.start_server(reference_bin, ["-C"])
    c = harness.start_server(reference_bin, [])
    try:
        ta, tb, tc = (corpus.run_case(case, s.addr) for s in (a, b, c))
    finally:
        for s in (a, b, c):
            s.stop()
    assert ta.data.startswith(b"STORED\r\nVALUE k 0 1 1\r\nx\r\nEND\r\nVERSION ")
    assert tb.data.startswith(b"STORED\r\nVALUE k 0 1 0\r\nx\r\nEND\r\nVERSION ")
    assert corpus.compare(corpus.normalize(ta.shown(), []), corpus.normalize(tb.shown(), []))[0] is False
    assert corpus.compare(corpus.normalize(ta.shown(), []), corpus.normalize(tc.shown(), []))[0] is True
