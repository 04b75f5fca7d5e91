"""Seeded protocol fuzzing for test_fuzz.py: request generator, the model of
one client's keys, the isolation checker and the differential runner.

Isolation (test_fuzz.py::test_isolation_*)
------------------------------------------
Each fuzz client has an id `cid` and a tag `<NN>` (two digits). Every key it
names contains its tag, and every value it stores starts with it. No byte the
client sends ever contains another client's tag (`sanitize`), and no hostile
line it sends names a key without its tag (memcached's tokenization: the line
up to `\\n`, cut at NUL, split on spaces). So a server that keeps connections
apart can only ever send a client its own tag, and a key in a reply
(`VALUE <key>`, meta `k<key>`, `ME <key>`) either carries the client's tag or
was named by the client itself. `Checker` verifies both on every byte read,
whatever the client sent before (garbage included).

On top of that, `Gen` keeps a model of the client's keys (absent, unknown, or
an `Item` with flags, value, TTL and, once seen, CAS unique) and predicts the
exact reply to each valid request. A valid batch (1-6 pipelined requests) ends
with a marker `mg <tag>z O<tag><n>`, a key nobody stores, so its reply
`EN O<tag><n>` is unique; everything before it is compared with the
prediction, byte for byte except CAS uniques (learned, then compared) and TTLs
(one clock tick of slack). Hostile input (`Gen.hostile`) makes every key it
names unknown; a key becomes known again at the next write whose outcome does
not depend on the old value (set, delete, ...). After hostile bytes the client
resynchronises by sending markers (with growing `\\r\\n` padding, for a
server waiting for a short data block) until one is answered, or the
connection ends. Input that ends a connection with requests unanswered
(resets, closes, quit) makes the keys it names unknown for HOLD_SECONDS:
a server may still act on them (through the proxy, on another node
connection than the client's next one). A huge multi-get's reply is
predicted byte for byte and compared as it streams in.

The sweep (`sweep_lines`): every command of SWEEP_COMMANDS with each token
broken each way (SWEEP_TOKENS, dropped, doubled, NUL or tab inside) and
the line's end broken; isolation clients send it as one hostile kind among
the others, the differential as cases of its own.

Differential (test_fuzz.py::test_differential_fuzz)
---------------------------------------------------
`diff_case` makes a seeded stream of pieces (valid and hostile requests, the
same generator) for a fresh memcached and a fresh node with the same flags;
`run_diff` compares the replies after corpus.normalize/compare. What is
excluded is listed at `diff_case`, with the README section it comes from.
`shrink` drops pieces while the difference persists; `corpus_text` prints the
result in corpus format.
"""

from __future__ import annotations

import base64
import binascii
import random
import re
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

import corpus
import harness

TAG_RE = re.compile(rb"<(\d\d)>")
MAX_KEY = 250
TTL_SLACK = 3            # seconds a meta `t` may differ from the model's TTL
REALTIME_MAXDELTA = 60 * 60 * 24 * 30

# Bytes of random payloads and garbage: no '<' (tags come only from tag_for)
# and no upper-case letters (so no value or garbage line can look like a reply
# line: VALUE, VA, HD, EN, ME, ...).
_BIN_TABLE = bytes((b | 0x20) if 0x41 <= b <= 0x5A else (0x3E if b == 0x3C else b) for b in range(256))
_TEXT = b"abcdefghijklmnopqrstuvwxyz0123456789-_:.,;!?=+ "
_TEXT_TABLE = bytes(_TEXT[b % len(_TEXT)] for b in range(256))
_KEYCHARS = b"abcdefghijklmnopqrstuvwxyz0123456789-_:.~"


def tag_for(cid: int) -> bytes:
    return b"<%02d>" % cid


def b64(key: bytes) -> bytes:
    return base64.b64encode(key)


def payload(rng: random.Random, n: int, binary: bool | None = None) -> bytes:
    if n <= 0:
        return b""
    raw = rng.randbytes(n)
    if binary is None:
        binary = rng.random() < 0.5
    return raw.translate(_BIN_TABLE if binary else _TEXT_TABLE)


def lines_payload(rng: random.Random, n: int) -> bytes:
    """A payload with a newline at least every 1000 bytes: parsed as command
    lines (after a refused storage command) it never makes a line memcached
    may refuse or accept depending on how its reads cut it (over 2048 bytes)."""
    p = bytearray(payload(rng, n))
    for i in range(999, n, 1000):
        p[i] = 0x0A
    return bytes(p)


def keychars(rng: random.Random, n: int) -> bytes:
    return bytes(rng.choice(_KEYCHARS) for _ in range(n))


# --------------------------------------------------------------------------
# Results of a run, for the summary line (conftest.pytest_terminal_summary)
# --------------------------------------------------------------------------

RESULTS: list[dict] = []


def record(stage: str, seconds: float, requests: int, checked: int, mismatches: int, crashes: int = 0,
           detail: str = "") -> None:
    RESULTS.append({"stage": stage, "seconds": seconds, "requests": requests, "checked": checked,
                    "mismatches": mismatches, "crashes": crashes, "detail": detail})


def summary_lines(seed: int, seconds: float) -> list[str]:
    """One line per stage, then the total."""
    out = []
    for r in RESULTS:
        out.append(f"  {r['stage']}: {r['seconds']:.0f} s, {r['requests']} requests sent, {r['checked']} replies "
                   f"checked, {r['mismatches']} mismatches, {r['crashes']} crashes" + (f" ({r['detail']})" if r["detail"] else ""))
    tot = {k: sum(r[k] for r in RESULTS) for k in ("seconds", "requests", "checked", "mismatches", "crashes")}
    out.append(f"fuzz: MEMCLUSTER_FUZZ_SEED={seed} MEMCLUSTER_FUZZ_SECONDS={seconds:g}: {tot['requests']} requests "
               f"sent, {tot['checked']} replies checked, {tot['mismatches']} mismatches, {tot['crashes']} crashes "
               f"({len(RESULTS)} stages, {tot['seconds']:.0f} s of fuzzing)")
    return out


# --------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------

ABSENT = "absent"
UNKNOWN = "unknown"
EXPIRED = "expired"


class Item:
    """A key's known state. `loose`: the value is a decimal number whose
    in-place padding is uncertain (memcached pads an incr/decr result with
    spaces only when no unsent reply still references the item). `cas` is a
    one-element list shared by copies that differ only in TTL. `bkey`: the
    item was stored with a base64 key (meta `b`), which makes an `mg` hit
    return its key in base64; None when that is uncertain. `fetched`: read
    since it was stored (see Gen._apply_delta)."""
    __slots__ = ("flags", "value", "exp", "cas", "loose", "bkey", "fetched")

    def __init__(self, flags: int, value: bytes, exp, cas=None, loose: bool = False, bkey=False,
                 fetched: bool = False):
        self.flags = flags
        self.value = value
        self.exp = exp
        self.cas = cas if cas is not None else [None]
        self.loose = loose
        self.bkey = bkey
        self.fetched = fetched

    def touched(self, exp) -> "Item":
        return Item(self.flags, self.value, exp, self.cas, self.loose, self.bkey, self.fetched)


def exp_for(ttl: int, now: float):
    """memcached's exptime rules: 0 none, negative expired, more than 30 days
    an absolute unix time."""
    if ttl == 0:
        return None
    if ttl < 0:
        return EXPIRED
    if ttl > REALTIME_MAXDELTA:
        return float(ttl) if ttl > now + 5 else EXPIRED
    return now + ttl


def uncertain_number(it) -> bool:
    """memcached checks a number of 2^63 or more for a '-' with strchr, which
    reads past the item's value into whatever memory follows: incr/decr of
    such a value may answer `non-numeric`, or not."""
    n = as_number(it) if isinstance(it, Item) else None
    return n is not None and n >= 2 ** 63


def as_number(it: Item):
    """The value as memcached's incr sees it (strtoull up to the CRLF), or None."""
    v = it.value
    if it.loose:
        return int(v)
    m = re.fullmatch(rb"(\d{1,20}) *", v)
    if not m:
        return None
    n = int(m.group(1))
    return n if n < 2 ** 64 else None


class Mismatch(Exception):
    pass


class Reader:
    """Walks one batch's reply bytes; each expectation consumes its part."""

    def __init__(self, buf: bytes):
        self.buf = buf
        self.pos = 0

    def fail(self, msg: str):
        raise Mismatch(f"{msg}; at byte {self.pos}: {self.buf[self.pos:self.pos + 160]!r}")

    def peek(self, prefix: bytes) -> bool:
        return self.buf.startswith(prefix, self.pos)

    def line(self) -> bytes:
        i = self.buf.find(b"\r\n", self.pos)
        if i < 0:
            self.fail("no complete reply line")
        out = self.buf[self.pos:i]
        self.pos = i + 2
        return out

    def exact(self, want: bytes, what: str):
        if not self.buf.startswith(want, self.pos):
            self.fail(f"{what}: expected {want[:160]!r}")
        self.pos += len(want)

    def block(self, n: int) -> bytes:
        if self.pos + n + 2 > len(self.buf) or self.buf[self.pos + n:self.pos + n + 2] != b"\r\n":
            self.fail(f"data block of {n} bytes not followed by CRLF")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n + 2
        return out


# Token specs in a meta reply: bytes (exact) or a callable(token) -> error|None.

def spec_cas(box):
    def check(tok: bytes):
        if not re.fullmatch(rb"c\d+", tok):
            return f"CAS token expected, got {tok!r}"
        v = int(tok[1:])
        if box[0] is None:
            box[0] = v
        elif box[0] != v:
            return f"CAS {v} but {box[0]} was seen before with no change since"
        return None
    return check


def spec_ttl(exp):
    def check(tok: bytes):
        if exp is None:
            return None if tok == b"t-1" else f"t-1 expected, got {tok!r}"
        if not re.fullmatch(rb"t\d+", tok):
            return f"TTL token expected, got {tok!r}"
        want = exp - time.time()
        v = int(tok[1:])
        if not (want - TTL_SLACK <= v <= want + TTL_SLACK):
            return f"TTL {v}, model says {want:.0f}"
        return None
    return check


def spec_prefix_num(prefix: bytes):
    def check(tok: bytes):
        return None if re.fullmatch(re.escape(prefix) + rb"-?\d+", tok) else f"{prefix!r}<number> expected, got {tok!r}"
    return check


def spec_size_loose(number: bytes):
    def check(tok: bytes):
        if not re.fullmatch(rb"s\d+", tok) or int(tok[1:]) < len(number):
            return f"size >= {len(number)} expected, got {tok!r}"
        return None
    return check


def show_spec(s) -> str:
    return s.decode("latin-1") if isinstance(s, bytes) else "<" + getattr(s, "__qualname__", "?").split(".")[0].replace("spec_", "") + ">"


def check_tokens(r: Reader, got: list[bytes], want: list, what: str):
    if len(got) != len(want):
        r.fail(f"{what}: tokens {[t.decode('latin-1') for t in got]} vs expected {[show_spec(s) for s in want]}")
    for g, w in zip(got, want):
        if isinstance(w, bytes):
            if g != w:
                r.fail(f"{what}: token {g!r}, expected {w!r}")
        else:
            err = w(g)
            if err:
                r.fail(f"{what}: {err}")


def check_token_forms(r: Reader, got: list[bytes], cands: list, what: str, vivified: bool = False):
    """check_tokens against the first of several candidate token lists that
    matches (the last one's error is reported). vivified: the item may have
    been created by a hostile `mg N` (memcached then adds W/X/Z flags)."""
    if vivified:
        while got and got[-1] in (b"W", b"X", b"Z"):
            got = got[:-1]
    for c in cands[:-1]:
        probe = Reader(r.buf)
        probe.pos = r.pos
        try:
            check_tokens(probe, got, c, what)
            return
        except Mismatch:
            continue
    check_tokens(r, got, cands[-1], what)


def value_ok(it: Item, data: bytes) -> bool:
    if it.loose:
        return re.fullmatch(re.escape(it.value) + rb" *", data) is not None
    return data == it.value


# --------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------

@dataclass
class Req:
    line: bytes                    # the command line with its terminator
    data: bytes | None = None      # the data block with its terminator
    check: object = None           # callable(Reader) for valid requests
    want: str = ""                 # what the model expects, for reports

    @property
    def bytes(self) -> bytes:
        return self.line + (self.data or b"")


# Commands that store a data block under their key: a hostile line may only
# name a key with the client's tag there. (Other commands may name any key:
# without a data block they cannot put another client's tag under it.)
_DATA_CARRYING = {b"set", b"add", b"replace", b"append", b"prepend", b"cas", b"ms"}
# never sent by an isolation client: they act on other clients' data or on
# the server's memory (cache_memlimit could evict what another client's model
# holds)
_FORBIDDEN = {b"flush_all", b"cache_memlimit", b"shutdown", b"slabs", b"lru", b"lru_crawler",
              b"watch", b"extstore", b"debugtime", b"misbehave"}


def memcached_lines(data: bytes):
    """The lines memcached would tokenize if `data` were parsed as commands
    (every \\n-terminated part and the tail), as token lists."""
    for part in data.split(b"\n"):
        part = part.split(b"\0", 1)[0]
        if part.endswith(b"\r"):
            part = part[:-1]
        toks = [t for t in part.split(b" ") if t]
        if toks:
            yield toks


def stored_keys(toks: list[bytes]) -> list[bytes]:
    """The keys a tokenized line would store a data block under (decoded
    when a meta `b` flag is present and the token decodes)."""
    cmd = toks[0]
    if cmd not in _DATA_CARRYING or len(toks) < 2:
        return []
    k = toks[1]
    if cmd == b"ms" and b"b" in toks[2:]:
        try:
            return [base64.b64decode(k, validate=True)]
        except (binascii.Error, ValueError):
            return [k]
    return [k]


# --------------------------------------------------------------------------
# The sweep: every command with every token broken
# --------------------------------------------------------------------------

# Every command a client may send, in a valid form; {K0} {K1} {N0} are keys,
# {KEY} is a long key (see sweep_lines). Storage commands carry a data block.
SWEEP_COMMANDS: list[tuple[bytes, bytes | None]] = [
    (b"get {K0} {K1}", None), (b"gets {K0} {K1}", None), (b"gat 100 {K0} {K1}", None),
    (b"gats 100 {K0}", None),
    (b"set {K0} 5 100 3", b"abc"), (b"set {K0} 5 100 3 noreply", b"abc"), (b"add {K1} 5 100 3", b"abc"),
    (b"replace {K0} 5 100 3", b"abc"), (b"append {K0} 0 0 3", b"abc"), (b"prepend {K0} 0 0 3 noreply", b"abc"),
    (b"cas {K0} 5 100 3 1", b"abc"),
    (b"delete {K0}", None), (b"delete {K1} 0 noreply", None), (b"incr {N0} 5", None),
    (b"decr {N0} 5 noreply", None), (b"touch {K0} 100", None),
    (b"mg {K0} v k f s t c Oab", None), (b"mg {K1} q v", None), (b"ms {K0} 3 T100 F5 MS c k Oab", b"abc"),
    (b"ms {K1} 3 MA q", b"abc"), (b"md {K0} k Oab", None), (b"md {K1} q C1", None),
    (b"ma {N0} N100 J5 D2 v t c MI Oab", None), (b"ma {N0} q MD", None), (b"mn", None), (b"me {K0}", None),
    (b"verbosity 1", None), (b"verbosity 0 noreply", None), (b"version", None), (b"flush_all 0", None),
]

# What a token becomes (None: the token is dropped). Nothing here makes a
# server wait for a long data block or close the connection.
SWEEP_TOKENS: list[bytes | None] = [
    None, b"", b"\x00", b"-1", b"0", b"4294967296", b"18446744073709551616", b"99999999999999999999999",
    b"abc", b"1.5", b"+5", b"0x10", b"noreply", b"q", b"b", b"k", b"\xff\x80", b"{KEY}",
]


def sweep_lines(keys: dict[bytes, bytes], commands=None) -> list[tuple[str, bytes]]:
    """Every command of SWEEP_COMMANDS (or `commands`) with one token
    broken, each way: replaced by each of SWEEP_TOKENS, dropped, doubled,
    with a NUL or a tab inside, and the whole line with a broken end (LF
    alone, CR alone, NUL before CRLF, spaces around). (what, bytes) pairs;
    the keys are put in from `keys` ({K0} {K1} {N0} {KEY})."""
    def fill(b: bytes) -> bytes:
        for name, k in keys.items():
            b = b.replace(name, k)
        return b

    out = []
    for line, data in (SWEEP_COMMANDS if commands is None else commands):
        toks = line.split(b" ")
        block = b"" if data is None else data + b"\r\n"
        forms: list[tuple[str, bytes, bytes]] = []
        for i, tok in enumerate(toks):
            variants = [b"%s\x00x" % tok, b"\t" + tok, tok + tok] + \
                ([tok.upper(), tok[:-1], tok + b"x"] if i == 0 else [t for t in SWEEP_TOKENS if t is not None])
            for v in variants:
                forms.append((f"token {i}", b" ".join(toks[:i] + [v] + toks[i + 1:]), b"\r\n"))
            if i > 0:
                forms.append((f"token {i} dropped", b" ".join(toks[:i] + toks[i + 1:]), b"\r\n"))
                forms.append((f"token {i} doubled", b" ".join(toks[:i + 1] + toks[i:]), b"\r\n"))
        for term in (b"\n", b"\r", b"\x00\r\n", b" \r\n", b"\r\r\n"):
            forms.append(("line end", line, term))
        forms.append(("spaces", b"  " + line.replace(b" ", b"  "), b"\r\n"))
        forms.append(("extra token", line + b" extra", b"\r\n"))
        for what, body, term in forms:
            out.append((f"{line.split(b' ')[0].decode()} {what}", fill(body + term + block)))
    return out


class Gen:
    """Generates one client's requests and predicts their replies.

    prefix: what every key starts with; tag: what every value starts with
    (both `<NN>` for an isolation client; the differential uses short keys
    and no tag). `valid()` returns a Req whose `check` consumes and verifies
    its reply; `hostile()` returns a Hostile."""

    def __init__(self, rng: random.Random, prefix: bytes, tag: bytes, diff: bool = False,
                 big_size: int = 64 * 1024):
        self.rng = rng
        self.prefix = prefix
        self.tag = tag
        self.diff = diff
        self.big_size = big_size
        self.data_keys = [prefix + b"k%d" % i for i in range(6)]
        self.num_keys = [prefix + b"n%d" % i for i in range(3)]
        self.big_key = prefix + b"big"
        self.marker_key = prefix + b"z"
        self.model: dict[bytes, object] = {k: ABSENT for k in self.all_keys}
        self.held: dict[bytes, float] = {}
        self.sweep: list[tuple[str, bytes]] | None = None
        self.sweep_pos = 0
        self.seq = 0
        self.batch_read: set[bytes] = set()

    @property
    def all_keys(self) -> list[bytes]:
        return [*self.data_keys, *self.num_keys, self.big_key]

    # -- state -------------------------------------------------------------
    def begin_batch(self):
        self.batch_read = set()

    def state(self, key: bytes):
        return self.model.get(key, UNKNOWN)

    def put(self, key: bytes, st):
        if st is not UNKNOWN and self.held.get(key, 0.0) > time.monotonic():
            st = UNKNOWN
        self.model[key] = ABSENT if st is EXPIRED else st

    def named(self, sent: bytes) -> list[bytes]:
        """The model keys named in `sent` (plainly or base64)."""
        return [k for k in self.all_keys if k in sent or b64(k)[:8] in sent]

    def poison(self, sent: bytes):
        """Every model key named in `sent` becomes unknown."""
        for k in self.named(sent):
            self.model[k] = UNKNOWN

    def poison_all(self, hold: float = 0.0):
        self.hold(self.all_keys, hold)

    def hold(self, keys, seconds: float):
        """The keys become unknown and stay so for `seconds`: requests a
        connection sent before it closed, unanswered, may still take effect
        until then (a server reads them when it gets to them; through the
        proxy they may be on their way to a node on another connection), so
        nothing later can be sure of their state."""
        until = time.monotonic() + seconds
        for k in keys:
            self.model[k] = UNKNOWN
            if seconds > 0:
                self.held[k] = max(self.held.get(k, 0.0), until)

    def known_fraction(self) -> float:
        return sum(1 for k in self.all_keys if self.model[k] is not UNKNOWN) / len(self.all_keys)

    # -- random pieces ------------------------------------------------------
    def ttl(self) -> int:
        r = self.rng.random()
        if r < 0.6:
            return 0
        if r < 0.9:
            return self.rng.choice([1000, 5000, 86400, 2_000_000_000])
        return self.rng.choice([-1, REALTIME_MAXDELTA + 1])

    def flags(self) -> int:
        return self.rng.choice([0, 0, 0, 1, 7, 65535, 65536, 2 ** 31, 2 ** 32 - 1, self.rng.randrange(2 ** 32)])

    def value(self) -> bytes:
        r = self.rng.random()
        if self.diff:
            # never a number: see read_key
            n = self.rng.choice([0, 1, 5, 30, 200, 1500]) if r < 0.97 else self.rng.randint(1501, 40000)
            return b"v" + lines_payload(self.rng, n)
        if r < 0.55:
            n = self.rng.randint(0, 40)
        elif r < 0.9:
            n = self.rng.randint(41, 2000)
        elif r < 0.99:
            n = self.rng.randint(2001, 40000)
        else:
            n = self.rng.randint(40001, 200000)
        return self.tag + payload(self.rng, n)

    # In the differential no counter reaches 2^63: memcached checks such a
    # number for a '-' with strchr, past the end of the value, into whatever
    # memory follows it (uncertain_number), so its answer to the next
    # incr/decr/ma proves nothing.
    def number(self) -> int:
        if self.diff:
            return self.rng.choice([0, 1, 9, 10, 99, 100, 12345, 2 ** 32, 2 ** 62 - 1, self.rng.randrange(10 ** 6),
                                    self.rng.randrange(2 ** 62)])
        return self.rng.choice([0, 1, 9, 10, 99, 100, 12345, 2 ** 32, 2 ** 63, 2 ** 64 - 2, 2 ** 64 - 1,
                                self.rng.randrange(10 ** 6), self.rng.randrange(2 ** 64)])

    def delta(self) -> int:
        if self.diff:
            return self.rng.choice([0, 1, 1, 2, 5, 100, 2 ** 32, 2 ** 40, self.rng.randrange(1000)])
        return self.rng.choice([0, 1, 1, 2, 5, 100, 2 ** 32, 2 ** 63, 2 ** 64 - 1, self.rng.randrange(1000)])

    def opaque(self) -> bytes:
        n = self.rng.randint(0, 31 - len(self.tag))
        return b"O" + self.tag + keychars(self.rng, n)

    def read_key(self) -> bytes:
        """A key for a request that reads the item. In the differential,
        never a counter: whether memcached then rewrites an incremented
        number in place (padded with spaces) or stores a new item depends on
        whether the read's reply was written yet (it holds a reference)."""
        if self.diff:
            return self.rng.choice([*self.data_keys, *self.data_keys, self.big_key])
        return self.key_for("any")

    def key_for(self, kind: str) -> bytes:
        if kind == "data":
            return self.rng.choice(self.data_keys)
        if kind == "num":
            return self.rng.choice(self.num_keys)
        r = self.rng.random()
        if r < 0.6:
            return self.rng.choice(self.data_keys)
        if r < 0.95:
            return self.rng.choice(self.num_keys)
        return self.big_key

    def next_token(self) -> bytes:
        """A marker's opaque: '^' occurs in no other opaque this client sends."""
        self.seq += 1
        return self.tag + b"^%x" % self.seq

    # -- the marker ----------------------------------------------------------
    def marker(self) -> tuple[bytes, Req]:
        tok = self.next_token()
        want = b"EN O" + tok + b"\r\n"

        def check(r: Reader):
            r.exact(want, "marker")
        return tok, Req(b"mg " + self.marker_key + b" O" + tok + b"\r\n", None, check, want.decode("latin-1"))

    # -- valid requests --------------------------------------------------------
    def valid(self) -> Req:
        r = self.rng.random()
        table = [
            (0.20, self.v_storage), (0.14, self.v_retrieval), (0.06, self.v_delete),
            (0.08, self.v_arith), (0.04, self.v_touch), (0.16, self.v_mg), (0.14, self.v_ms),
            (0.05, self.v_md), (0.08, self.v_ma), (0.02, self.v_simple), (0.01, self.v_me),
            (0.02, self.v_big),
        ]
        total = sum(w for w, _ in table)
        r *= total
        for w, fn in table:
            if r < w:
                return fn()
            r -= w
        return table[0][1]()

    def v_simple(self) -> Req:
        c = self.rng.randrange(4)
        if c == 0:
            return Req(b"mn\r\n", None, lambda r: r.exact(b"MN\r\n", "mn"), "MN")
        if c == 1:
            def check(r: Reader):
                ln = r.line()
                if not ln.startswith(b"VERSION "):
                    r.fail(f"version: got {ln!r}")
            return Req(b"version\r\n", None, check, "VERSION ...")
        if c == 2:
            return Req(b"verbosity 0\r\n", None, lambda r: r.exact(b"OK\r\n", "verbosity"), "OK")
        return Req(b"verbosity 1 noreply\r\n", None, lambda r: None, "(nothing)")

    def v_big(self) -> Req:
        """A set of the big key (what the huge multi-gets ask for)."""
        key = self.big_key
        v = self.tag + (lines_payload if self.diff else payload)(self.rng, self.big_size - len(self.tag))
        self.put(key, Item(0, v, None))
        return Req(b"set %s 0 0 %d\r\n" % (key, len(v)), v + b"\r\n",
                   lambda r: r.exact(b"STORED\r\n", "set big"), "STORED")

    def v_storage(self) -> Req:
        rng = self.rng
        cmd = rng.choice([b"set", b"set", b"add", b"replace", b"append", b"prepend", b"cas"])
        if cmd in (b"set", b"add", b"replace", b"cas") and rng.random() < 0.3:
            key = self.key_for("num")
            data = b"%d" % self.number()
        else:
            key = self.key_for("data")
            data = self.value()
            if cmd in (b"append", b"prepend") and rng.random() < 0.5:
                data = self.tag + payload(rng, rng.randint(0, 8))
        too_large = cmd == b"set" and rng.random() < 0.01
        if too_large:
            data = self.tag + (lines_payload if self.diff else payload)(rng, 1024 * 1024 + rng.randint(0, 5000))
        flags, ttl = self.flags(), self.ttl()
        noreply = rng.random() < 0.3
        st = self.state(key)
        now = time.time()
        exp = exp_for(ttl, now)
        casv = None
        if cmd == b"cas":
            if isinstance(st, Item) and st.cas[0] is not None and rng.random() < 0.7:
                casv = st.cas[0]
            else:
                casv = rng.randrange(1, 2 ** 64)
                if isinstance(st, Item) and casv == st.cas[0]:
                    casv += 1
        # outcome
        if too_large:
            reply, new = b"SERVER_ERROR object too large for cache", ABSENT
        elif st is UNKNOWN:
            if cmd == b"set":
                reply, new = b"STORED", Item(flags, data, exp)
            elif cmd == b"cas":
                reply, new = [b"EXISTS", b"NOT_FOUND"], UNKNOWN
            else:
                reply, new = [b"STORED", b"NOT_STORED"], UNKNOWN
        elif cmd == b"set":
            reply, new = b"STORED", Item(flags, data, exp)
        elif cmd == b"add":
            reply, new = (b"NOT_STORED", st) if isinstance(st, Item) else (b"STORED", Item(flags, data, exp))
        elif cmd == b"replace":
            reply, new = (b"STORED", Item(flags, data, exp)) if isinstance(st, Item) else (b"NOT_STORED", st)
        elif cmd in (b"append", b"prepend"):
            if isinstance(st, Item):
                if st.loose:
                    reply, new = b"STORED", UNKNOWN
                else:
                    v = st.value + data if cmd == b"append" else data + st.value
                    reply, new = b"STORED", Item(st.flags, v, st.exp)
            else:
                reply, new = b"NOT_STORED", st
        else:  # cas
            if not isinstance(st, Item):
                reply, new = b"NOT_FOUND", st
            elif st.cas[0] == casv:
                reply, new = b"STORED", Item(flags, data, exp)
            else:
                reply, new = b"EXISTS", st
        if new is not UNKNOWN and isinstance(new, Item) and new.exp is EXPIRED:
            new = ABSENT
        self.put(key, new)
        line = b"%s %s %d %d %d" % (cmd, key, flags, ttl, len(data))
        if cmd == b"cas":
            line += b" %d" % casv
        if noreply:
            line += b" noreply"
        line += b"\r\n"
        if noreply:
            return Req(line, data + b"\r\n", lambda r: None, "(nothing: noreply)")
        return Req(line, data + b"\r\n", self._classic_check(reply, cmd.decode()), _show(reply))

    def _classic_check(self, reply, what: str):
        options = reply if isinstance(reply, list) else [reply]

        def check(r: Reader):
            ln = r.line()
            if ln not in options:
                r.fail(f"{what}: got {ln!r}, expected {' or '.join(o.decode() for o in options)}")
        return check

    def v_retrieval(self) -> Req:
        rng = self.rng
        cmd = rng.choice([b"get", b"get", b"gets", b"gat", b"gats"])
        n = rng.choice([1, 1, 2, 3, 5, 8])
        keys = [self.read_key() for _ in range(n)]
        if rng.random() < 0.1 and self.state(self.big_key) is not UNKNOWN:
            keys.append(self.big_key)
        ttl = None
        if cmd in (b"gat", b"gats"):
            ttl = self.ttl()
            if ttl < 0 or ttl == REALTIME_MAXDELTA + 1:
                keys = list(dict.fromkeys(keys))      # no duplicates when the touch expires it
        now = time.time()
        entries = []
        for k in keys:
            st = self.state(k)
            entries.append((k, st))
            if isinstance(st, Item):
                st.fetched = True
                self.batch_read.add(k)
                if ttl is not None:
                    e = exp_for(ttl, now)
                    self.put(k, st.touched(e) if e is not EXPIRED else ABSENT)
            elif st is UNKNOWN:
                self.batch_read.add(k)
        with_cas = cmd in (b"gets", b"gats")
        line = cmd + (b" %d" % ttl if ttl is not None else b"") + b" " + b" ".join(keys) + b"\r\n"
        want = "; ".join(f"{k.decode('latin-1')}={_state_text(st)}" for k, st in entries) + "; END"

        def check(r: Reader):
            for k, st in entries:
                head = b"VALUE " + k + b" "
                if isinstance(st, Item):
                    ln = r.line()
                    toks = ln.split(b" ")
                    if not ln.startswith(head) or len(toks) != (5 if with_cas else 4):
                        r.fail(f"{cmd.decode()}: expected VALUE line for {k!r} ({_state_text(st)}), got {ln[:200]!r}")
                    if toks[2] != b"%d" % st.flags:
                        r.fail(f"{cmd.decode()} {k!r}: flags {toks[2]!r}, model {st.flags}")
                    data = r.block(int(toks[3]))
                    if not value_ok(st, data):
                        r.fail(f"{cmd.decode()} {k!r}: value {data[:80]!r}... ({len(data)} bytes), model "
                               f"{st.value[:80]!r}... ({len(st.value)} bytes)")
                    if with_cas:
                        err = spec_cas(st.cas)(b"c" + toks[4])
                        if err:
                            r.fail(f"{cmd.decode()} {k!r}: {err}")
                elif st is UNKNOWN and r.peek(head):
                    ln = r.line()
                    toks = ln.split(b" ")
                    if len(toks) != (5 if with_cas else 4) or not toks[3].isdigit():
                        r.fail(f"{cmd.decode()}: bad VALUE line {ln[:200]!r}")
                    r.block(int(toks[3]))
            ln = r.line()
            if ln != b"END":
                r.fail(f"{cmd.decode()}: expected END, got {ln[:200]!r}")
        return Req(line, None, check, want)

    def v_delete(self) -> Req:
        key = self.key_for("any")
        st = self.state(key)
        noreply = self.rng.random() < 0.3
        zero = self.rng.random() < 0.1
        self.put(key, ABSENT)
        line = b"delete " + key + (b" 0" if zero else b"") + (b" noreply" if noreply else b"") + b"\r\n"
        if noreply:
            return Req(line, None, lambda r: None, "(nothing: noreply)")
        reply = [b"DELETED", b"NOT_FOUND"] if st is UNKNOWN else (b"DELETED" if isinstance(st, Item) else b"NOT_FOUND")
        return Req(line, None, self._classic_check(reply, "delete"), _show(reply))

    def _apply_delta(self, key: bytes, st: Item, incr: bool, d: int) -> tuple[int, Item]:
        old = as_number(st)
        new = (old + d) % 2 ** 64 if incr else max(0, old - d)
        s = b"%d" % new
        maybe_b = None if st.bkey is not False else False
        if st.loose:
            it = Item(st.flags, s, st.exp, loose=True, bkey=maybe_b, fetched=True)
        elif len(s) <= len(st.value):
            if st.fetched or key in self.batch_read:
                # memcached rewrites the number in place (padded with spaces)
                # only when nobody else holds a reference to the item: an
                # unsent reply, or the LRU maintainer's asynchronous bump after
                # a fetch, make it store a new item instead (no padding, no
                # base64-key mark). Which one happens depends on timing.
                it = Item(st.flags, s, st.exp, loose=True, bkey=maybe_b, fetched=True)
            else:
                it = Item(st.flags, s.ljust(len(st.value)), st.exp, bkey=st.bkey)
        else:
            it = Item(st.flags, s, st.exp)
        return new, it

    def v_arith(self) -> Req:
        rng = self.rng
        cmd = rng.choice([b"incr", b"decr"])
        key = self.key_for("num") if rng.random() < 0.85 else self.key_for("data")
        d = self.delta()
        noreply = rng.random() < 0.25
        st = self.state(key)
        line = b"%s %s %d%s\r\n" % (cmd, key, d, b" noreply" if noreply else b"")
        if st is UNKNOWN:
            reply = None
        elif not isinstance(st, Item):
            reply = b"NOT_FOUND"
        elif as_number(st) is None:
            reply = b"CLIENT_ERROR cannot increment or decrement non-numeric value"
        elif uncertain_number(st):
            new, _ = self._apply_delta(key, st, cmd == b"incr", d)
            self.put(key, UNKNOWN)
            reply = [b"%d" % new, b"CLIENT_ERROR cannot increment or decrement non-numeric value"]
        else:
            new, it = self._apply_delta(key, st, cmd == b"incr", d)
            self.put(key, it)
            reply = b"%d" % new
        if noreply:
            return Req(line, None, lambda r: None, "(nothing: noreply)")
        if reply is None:
            def check(r: Reader):
                ln = r.line()
                if not (ln.isdigit() or ln in (b"NOT_FOUND", b"CLIENT_ERROR cannot increment or decrement non-numeric value")):
                    r.fail(f"{cmd.decode()} on an unknown key: got {ln!r}")
            return Req(line, None, check, "<number>|NOT_FOUND|CLIENT_ERROR")
        return Req(line, None, self._classic_check(reply, cmd.decode()), _show(reply))

    def v_touch(self) -> Req:
        key = self.key_for("any")
        ttl = self.ttl()
        noreply = self.rng.random() < 0.25
        st = self.state(key)
        if isinstance(st, Item):
            e = exp_for(ttl, time.time())
            self.put(key, st.touched(e) if e is not EXPIRED else ABSENT)
            reply = b"TOUCHED"
        elif st is UNKNOWN:
            reply = [b"TOUCHED", b"NOT_FOUND"]
        else:
            reply = b"NOT_FOUND"
        line = b"touch %s %d%s\r\n" % (key, ttl, b" noreply" if noreply else b"")
        if noreply:
            return Req(line, None, lambda r: None, "(nothing: noreply)")
        return Req(line, None, self._classic_check(reply, "touch"), _show(reply))

    def _meta_key(self, key: bytes, use_b: bool) -> bytes:
        return b64(key) if use_b else key

    def _ret_flags(self, flags: list[bytes], key_tok: bytes, use_b, hit_specs: dict) -> list:
        """Return-flag tokens in request order; `hit_specs` maps a flag letter
        to its token spec (missing letters return nothing)."""
        out = []
        for f in flags:
            c = f[:1]
            if c == b"k":
                out.append(b"k" + key_tok)
                if use_b:
                    out.append(b"b")
            elif c == b"O":
                out.append(f)
            elif c in hit_specs:
                out.append(hit_specs[c])
        return out

    def v_mg(self) -> Req:
        rng = self.rng
        key = self.read_key()
        st = self.state(key)
        use_b = rng.random() < 0.15
        pool = [b"v", b"k", b"f", b"s", b"c", b"t", self.opaque()]
        if rng.random() < 0.15:
            pool.append(b"T%d" % rng.choice([1000, 5000, 86400]))
        if st is not UNKNOWN and rng.random() < 0.3:
            pool.append(b"q")
        flags = rng.sample(pool, rng.randint(0, len(pool)))
        if any(f.startswith(b"T") for f in flags) and b"t" in flags:
            flags.remove(b"t")
        if use_b:
            flags.insert(rng.randrange(len(flags) + 1), b"b")
        key_tok = self._meta_key(key, use_b)
        line = b"mg " + key_tok + b"".join(b" " + f for f in flags) + b"\r\n"
        quiet = b"q" in flags
        with_v = b"v" in flags
        miss_toks = self._ret_flags(flags, key_tok, use_b, {})
        if isinstance(st, Item):
            st.fetched = True
            self.batch_read.add(key)
            for f in flags:
                if f.startswith(b"T"):
                    self.put(key, st.touched(exp_for(int(f[1:]), time.time())))
            specs = {b"f": b"f%d" % st.flags,
                     b"s": spec_size_loose(st.value) if st.loose else b"s%d" % len(st.value),
                     b"c": spec_cas(st.cas), b"t": spec_ttl(st.exp)}
            # a hit shows the key as the item was stored (base64 or not)
            forms = [True, False] if st.bkey is None else [st.bkey]
            cands = [self._ret_flags(flags, b64(key) if bk else key, bk, specs) for bk in forms]
            toks = cands[0]

            def check(r: Reader):
                ln = r.line()
                got = ln.split(b" ")
                if with_v:
                    if got[0] != b"VA" or len(got) < 2 or not got[1].isdigit():
                        r.fail(f"mg hit: expected VA, got {ln[:200]!r}")
                    check_token_forms(r, got[2:], cands, "mg")
                    data = r.block(int(got[1]))
                    if not value_ok(st, data):
                        r.fail(f"mg {key!r}: value {data[:80]!r} ({len(data)} bytes), model {st.value[:80]!r} ({len(st.value)} bytes)")
                else:
                    if got[0] != b"HD":
                        r.fail(f"mg hit: expected HD, got {ln[:200]!r}")
                    check_token_forms(r, got[1:], cands, "mg")
            return Req(line, None, check, ("VA " if with_v else "HD ") + " ".join(show_spec(t) for t in toks))
        if st is UNKNOWN:
            self.batch_read.add(key)
            gen_specs = {b"f": spec_prefix_num(b"f"), b"s": spec_prefix_num(b"s"),
                         b"c": spec_prefix_num(b"c"), b"t": spec_prefix_num(b"t")}
            hit_cands = [self._ret_flags(flags, b64(key) if bk else key, bk, gen_specs) for bk in (True, False)]

            def check(r: Reader):
                ln = r.line()
                got = ln.split(b" ")
                if got[0] == b"EN":
                    check_tokens(r, got[1:], miss_toks, "mg miss")
                elif with_v and got[0] == b"VA" and len(got) > 1 and got[1].isdigit():
                    check_token_forms(r, got[2:], hit_cands, "mg", vivified=True)
                    r.block(int(got[1]))
                elif not with_v and got[0] == b"HD":
                    check_token_forms(r, got[1:], hit_cands, "mg", vivified=True)
                else:
                    r.fail(f"mg on an unknown key: got {ln[:200]!r}")
            return Req(line, None, check, "EN|VA|HD")
        if quiet:
            return Req(line, None, lambda r: None, "(nothing: q miss)")
        want = b" ".join([b"EN", *miss_toks]) + b"\r\n"
        return Req(line, None, lambda r: r.exact(want, "mg miss"), want.decode("latin-1"))

    def v_ms(self) -> Req:
        rng = self.rng
        numeric = rng.random() < 0.25
        key = self.key_for("num" if numeric else "data")
        st = self.state(key)
        data = b"%d" % self.number() if numeric else self.value()
        mode = b"S" if numeric else rng.choice([b"S", b"S", b"S", b"E", b"A", b"P", b"R"])
        use_b = rng.random() < 0.15
        too_large = rng.random() < 0.01 and not numeric
        if too_large:
            data = self.tag + (lines_payload if self.diff else payload)(rng, 1024 * 1024 + rng.randint(0, 5000))
        fl, ttl = self.flags(), self.ttl()
        flags = []
        if rng.random() < 0.5:
            flags.append(b"F%d" % fl)
        else:
            fl = 0
        if rng.random() < 0.4:
            flags.append(b"T%d" % ttl)
        else:
            ttl = 0
        if mode != b"S" or rng.random() < 0.3:
            flags.append(b"M" + mode)
        casv = None
        if mode == b"S" and rng.random() < 0.15:
            if isinstance(st, Item) and st.cas[0] is not None and rng.random() < 0.7:
                casv = st.cas[0]
            else:
                casv = rng.randrange(1, 2 ** 64)
                if isinstance(st, Item) and st.cas[0] == casv:
                    casv += 1
            flags.append(b"C%d" % casv)
        for f in (b"k", self.opaque(), b"c"):
            if rng.random() < 0.35:
                flags.append(f)
        quiet = st is not UNKNOWN and rng.random() < 0.3
        if quiet:
            flags.append(b"q")
        rng.shuffle(flags)
        if use_b:
            flags.insert(rng.randrange(len(flags) + 1), b"b")
        key_tok = self._meta_key(key, use_b)
        line = b"ms " + key_tok + b" %d" % len(data) + b"".join(b" " + f for f in flags) + b"\r\n"
        exp = exp_for(ttl, time.time())
        newcas = [None]
        # outcome
        if too_large:
            self.put(key, ABSENT)
            want = b"SERVER_ERROR object too large for cache\r\n"
            return Req(line, data + b"\r\n", lambda r: r.exact(want, "ms too large"), want.decode())
        if st is UNKNOWN:
            if mode == b"S" and casv is None:
                code, new = b"HD", Item(fl, data, exp, newcas, bkey=use_b)
            else:
                code, new = None, UNKNOWN
        elif casv is not None:
            if not isinstance(st, Item):
                code, new = b"NF", st
            elif st.cas[0] == casv:
                code, new = b"HD", Item(fl, data, exp, newcas, bkey=use_b)
            else:
                code, new = b"EX", st
        elif mode == b"S":
            code, new = b"HD", Item(fl, data, exp, newcas, bkey=use_b)
        elif mode == b"E":
            code, new = (b"NS", st) if isinstance(st, Item) else (b"HD", Item(fl, data, exp, newcas, bkey=use_b))
        elif mode == b"R":
            code, new = (b"HD", Item(fl, data, exp, newcas, bkey=use_b)) if isinstance(st, Item) else (b"NS", st)
        else:  # A / P: memcached's combined item is never marked base64
            if isinstance(st, Item) and not st.loose:
                v = st.value + data if mode == b"A" else data + st.value
                code, new = b"HD", Item(st.flags, v, st.exp, newcas)
            elif isinstance(st, Item):
                code, new = b"HD", UNKNOWN
            else:
                code, new = b"NS", st
        if isinstance(new, Item) and new.exp is EXPIRED:
            new = ABSENT
        self.put(key, new)
        if code is None:
            hd_toks = self._ret_flags(flags, key_tok, use_b, {b"c": spec_prefix_num(b"c")})
            ns_toks = self._ret_flags(flags, key_tok, use_b, {b"c": b"c0"})

            def check(r: Reader):
                ln = r.line()
                got = ln.split(b" ")
                if got[0] == b"HD":
                    check_tokens(r, got[1:], hd_toks, "ms")
                elif got[0] in (b"NS", b"EX", b"NF"):
                    check_tokens(r, got[1:], ns_toks, "ms")
                else:
                    r.fail(f"ms on an unknown key: got {ln[:200]!r}")
            return Req(line, data + b"\r\n", check, "HD|NS|EX|NF")
        toks = self._ret_flags(flags, key_tok, use_b, {b"c": spec_cas(newcas) if code == b"HD" else b"c0"})
        if code == b"HD" and quiet:
            return Req(line, data + b"\r\n", lambda r: None, "(nothing: q)")

        def check(r: Reader):
            ln = r.line()
            got = ln.split(b" ")
            if got[0] != code:
                r.fail(f"ms: expected {code.decode()}, got {ln[:200]!r}")
            check_tokens(r, got[1:], toks, "ms")
        return Req(line, data + b"\r\n", check, " ".join([code.decode(), *(show_spec(t) for t in toks)]))

    def v_md(self) -> Req:
        rng = self.rng
        key = self.key_for("any")
        st = self.state(key)
        use_b = rng.random() < 0.15
        flags = [f for f in (b"k", self.opaque()) if rng.random() < 0.4]
        casv = None
        if isinstance(st, Item) and rng.random() < 0.2:
            casv = st.cas[0] if st.cas[0] is not None and rng.random() < 0.6 else rng.randrange(1, 2 ** 64)
            flags.append(b"C%d" % casv)
        quiet = st is not UNKNOWN and rng.random() < 0.3
        if quiet:
            flags.append(b"q")
        rng.shuffle(flags)
        if use_b:
            flags.insert(rng.randrange(len(flags) + 1), b"b")
        key_tok = self._meta_key(key, use_b)
        line = b"md " + key_tok + b"".join(b" " + f for f in flags) + b"\r\n"
        toks = self._ret_flags(flags, key_tok, use_b, {})
        if st is UNKNOWN:
            self.put(key, ABSENT)

            def check(r: Reader):
                ln = r.line()
                got = ln.split(b" ")
                if got[0] not in (b"HD", b"NF"):
                    r.fail(f"md on an unknown key: got {ln[:200]!r}")
                check_tokens(r, got[1:], toks, "md")
            return Req(line, None, check, "HD|NF")
        if not isinstance(st, Item):
            code = b"NF"
        elif casv is not None and casv != st.cas[0]:
            code = b"EX"
        else:
            code = b"HD"
            self.put(key, ABSENT)
        if code == b"HD" and quiet:
            return Req(line, None, lambda r: None, "(nothing: q)")
        want = b" ".join([code, *toks]) + b"\r\n"
        return Req(line, None, lambda r: r.exact(want, "md"), want.decode("latin-1"))

    def v_ma(self) -> Req:
        rng = self.rng
        key = self.key_for("num") if rng.random() < 0.85 else self.key_for("data")
        st = self.state(key)
        use_b = rng.random() < 0.1
        flags = []
        autoviv = rng.random() < 0.4
        ttl = rng.choice([0, 1000, 86400])
        init = rng.choice([0, 1, 7, 2 ** 40 if self.diff else 2 ** 64 - 1, rng.randrange(10 ** 6)])
        if autoviv:
            flags.append(b"N%d" % ttl)
            if rng.random() < 0.6:
                flags.append(b"J%d" % init)
            else:
                init = 0
        d = 1
        if rng.random() < 0.6:
            d = self.delta()
            flags.append(b"D%d" % d)
        incr = True
        if rng.random() < 0.4:
            m = rng.choice([b"I", b"+", b"D", b"-"])
            incr = m in (b"I", b"+")
            flags.append(b"M" + m)
        for f in (b"v", b"t", b"c", b"k", self.opaque()):
            if rng.random() < 0.35:
                flags.append(f)
        quiet = st is not UNKNOWN and not uncertain_number(st) and rng.random() < 0.25
        if quiet:
            flags.append(b"q")
        rng.shuffle(flags)
        if use_b:
            flags.insert(rng.randrange(len(flags) + 1), b"b")
        key_tok = self._meta_key(key, use_b)
        line = b"ma " + key_tok + b"".join(b" " + f for f in flags) + b"\r\n"
        with_v = b"v" in flags
        miss_toks = self._ret_flags(flags, key_tok, use_b, {})
        nonnum = b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
        if st is UNKNOWN or uncertain_number(st):
            self.put(key, UNKNOWN)
            gen_specs = {b"c": spec_prefix_num(b"c"), b"t": spec_prefix_num(b"t")}
            hit_toks = self._ret_flags(flags, key_tok, use_b, gen_specs)

            def check(r: Reader):
                ln = r.line()
                got = ln.split(b" ")
                if ln + b"\r\n" == nonnum:
                    return
                if got[0] == b"NF":
                    check_tokens(r, got[1:], miss_toks, "ma miss")
                elif with_v and got[0] == b"VA" and len(got) > 1 and got[1].isdigit():
                    check_tokens(r, got[2:], hit_toks, "ma")
                    if not r.block(int(got[1])).isdigit():
                        r.fail("ma: value is not a number")
                elif not with_v and got[0] == b"HD":
                    check_tokens(r, got[1:], hit_toks, "ma")
                else:
                    r.fail(f"ma on an unknown key: got {ln[:200]!r}")
            return Req(line, None, check, "NF|HD|VA|CLIENT_ERROR")
        if isinstance(st, Item) and as_number(st) is None:
            return Req(line, None, lambda r: r.exact(nonnum, "ma"), nonnum.decode())
        newcas = [None]
        if isinstance(st, Item):
            number, it = self._apply_delta(key, st, incr, d)
            it.cas = newcas
            self.put(key, it)
        elif autoviv:
            number = init
            it = Item(0, b"%d" % init, exp_for(ttl, time.time()), newcas)
            self.put(key, it)
        else:
            want = b" ".join([b"NF", *miss_toks]) + b"\r\n"
            return Req(line, None, lambda r: r.exact(want, "ma miss"), want.decode("latin-1"))
        if quiet and isinstance(st, Item):
            # q hides the reply to an increment, not to a creation (N)
            return Req(line, None, lambda r: None, "(nothing: q)")
        ttl_shown = it.exp
        if not isinstance(st, Item) and b"t" in flags and flags.index(b"t") < next(
                i for i, f in enumerate(flags) if f.startswith(b"N")):
            ttl_shown = None      # memcached: a `t` before `N` shows -1 on creation
        toks = self._ret_flags(flags, key_tok, use_b, {b"c": spec_cas(newcas), b"t": spec_ttl(ttl_shown)})
        num = b"%d" % number

        def check(r: Reader):
            ln = r.line()
            got = ln.split(b" ")
            if with_v:
                if got[:2] != [b"VA", b"%d" % len(num)]:
                    r.fail(f"ma: expected VA {len(num)}, got {ln[:200]!r}")
                check_tokens(r, got[2:], toks, "ma")
                if r.block(len(num)) != num:
                    r.fail(f"ma: value, expected {num!r}")
            else:
                if got[0] != b"HD":
                    r.fail(f"ma: expected HD, got {ln[:200]!r}")
                check_tokens(r, got[1:], toks, "ma")
        return Req(line, None, check, ("VA %d " % len(num) if with_v else "HD ") + " ".join(show_spec(t) for t in toks)
                   + (f" / {number}" if with_v else ""))

    def v_me(self) -> Req:
        key = self.read_key()
        st = self.state(key)
        line = b"me " + key + b"\r\n"
        # the key as the item was stored: base64 if with meta `b`
        heads = [b"ME " + b64(key) + b" ", b"ME " + key + b" "]
        if isinstance(st, Item):
            st.fetched = True
            if st.bkey is not None:
                heads = [heads[0] if st.bkey else heads[1]]
        head = heads[-1]

        def check(r: Reader):
            ln = r.line()
            hit = any(ln.startswith(h) for h in heads)
            if isinstance(st, Item) and not hit:
                r.fail(f"me: expected {heads[0]!r}..., got {ln[:200]!r}")
            if st is ABSENT and ln != b"EN":
                r.fail(f"me: expected EN, got {ln[:200]!r}")
            if st is UNKNOWN and not (ln == b"EN" or hit):
                r.fail(f"me: got {ln[:200]!r}")
        return Req(line, None, check, "ME ..." if isinstance(st, Item) else "EN")

    # -- hostile -------------------------------------------------------------
    def hostile(self, allow_close: bool = True) -> "Hostile":
        """One hostile action. Its bytes never carry a foreign tag, and for an
        isolation client no line names a key without the client's tag."""
        rng = self.rng
        kinds = [("mutate", 40), ("sweep", 20), ("noreply_nul", 12), ("garbage", 8), ("length", 8),
                 ("pipeline", 6)]
        if allow_close:
            kinds += [("long_line", 2), ("binary_first", 2), ("half_close", 3), ("reset", 3),
                      ("close_mid", 2), ("quit", 2)]
            if not self.diff:
                kinds.append(("huge_length", 2))
        kind = _weighted(rng, kinds)
        for _ in range(20):
            h = getattr(self, "h_" + kind)()
            if self.acceptable(h.data):
                return h
        # nothing acceptable came out (rare): a plain unknown command
        return Hostile("fallback", b"bogus " + self.tag + b"\r\n", "resync")

    def acceptable(self, data: bytes) -> bool:
        if self.diff:
            return True
        if any(m.group(0) != self.tag for m in TAG_RE.finditer(data)):
            return False
        for toks in memcached_lines(data):
            if toks[0] in _FORBIDDEN:
                return False
            if toks[0] in (b"mg", b"ms", b"md", b"ma") and any(t[:1] == b"b" for t in toks[2:]) \
                    and not canonical_b64(toks[1]):
                # (memcached reads a flag from a token's first byte) servers
                # decode a broken base64 key leniently and answer with its
                # canonical form, which this client never sent
                return False
            for k in stored_keys(toks):
                if self.tag not in k or k == self.marker_key:
                    return False
        return True

    def _valid_for_mutation(self) -> Req:
        # a throwaway model: hostile requests poison what they name anyway
        saved = dict(self.model)
        saved_read = set(self.batch_read)
        try:
            return self.valid()
        finally:
            self.model = saved
            self.batch_read = saved_read

    def h_mutate(self) -> "Hostile":
        req = self._valid_for_mutation()
        line, data = req.line, req.data
        for _ in range(self.rng.randint(1, 3)):
            line, data = self.mutate(line, data)
        return Hostile("mutate", line + (data or b""), self._after(line, data))

    def h_noreply_nul(self) -> "Hostile":
        """NUL bytes around `noreply` (and meta `q`), the proxy's known weak spot."""
        rng = self.rng
        req = self._valid_for_mutation()
        line, data = req.line, req.data
        body, term = _split_term(line)
        if b" noreply" not in body:
            body += rng.choice([b" noreply", b" q"] if body[:1] == b"m" else [b" noreply"])
        i = body.rfind(b" noreply") if b" noreply" in body else body.rfind(b" q")
        word_end = body.find(b" ", i + 1)
        word_end = len(body) if word_end < 0 else word_end
        forms = [
            body[:i] + b"\x00" + body[i:],                          # \0 noreply
            body[:i] + b"\x00" + body[i + 1:],                      # \0noreply
            body[:word_end] + b"\x00" + body[word_end:],            # noreply\0
            body[:word_end] + b" \x00" + body[word_end:],           # noreply \0
            body[:i + 3] + b"\x00" + body[i + 3:],                  # nor\0eply
            body + b" \x00",
            body.replace(b" noreply", b" noreply noreply"),
            body[:i] + b" \x00\x00 " + body[i + 1:],
        ]
        body = rng.choice(forms)
        if rng.random() < 0.3:
            term = rng.choice([b"\n", b"\r", b"\x00\r\n", b"\r\r\n"])
        return Hostile("noreply_nul", body + term + (data or b""), self._after(body + term, data))

    def h_pipeline(self) -> "Hostile":
        """A few valid requests with one mutated request somewhere among them."""
        reqs = [self._valid_for_mutation() for _ in range(self.rng.randint(2, 4))]
        i = self.rng.randrange(len(reqs))
        out, after = b"", "resync"
        for j, r in enumerate(reqs):
            if j == i:
                line, data = self.mutate(r.line, r.data)
                out += line + (data or b"")
                after = self._after(line, data)
            else:
                out += r.bytes
        return Hostile("pipeline", out, after)

    def h_sweep(self) -> "Hostile":
        """The next line of the sweep (every command with every token
        broken, sweep_lines), over this client's keys."""
        if self.sweep is None:
            long_key = self.prefix + b"~" + b"x" * (MAX_KEY + 1 - len(self.prefix))
            self.sweep = sweep_lines({b"{K0}": self.data_keys[0], b"{K1}": self.data_keys[1],
                                      b"{N0}": self.num_keys[0], b"{KEY}": long_key})
            if not self.diff:
                self.sweep = [(w, d) for w, d in self.sweep if b"flush_all" not in d]
            self.sweep_pos = self.rng.randrange(len(self.sweep))
        what, data = self.sweep[self.sweep_pos % len(self.sweep)]
        self.sweep_pos += 1
        return Hostile("sweep", data, self._after(data, None))

    def h_garbage(self) -> "Hostile":
        rng = self.rng
        n = rng.choice([1, 2, 16, 100, 600, 2000])
        g = bytearray(payload(rng, rng.randint(1, n), binary=rng.random() < 0.7))
        for _ in range(rng.randint(0, 6)):
            g[rng.randrange(len(g) + 1):0] = rng.choice([b"\r\n", b"\n", b"\r", b"\x00", b" "])
        if self.diff and not g.endswith(b"\n") and len(g) > 1500:
            g += b"\r\n"
        return Hostile("garbage", bytes(g), "resync")

    def h_length(self) -> "Hostile":
        """A storage request whose data block is shorter or longer than declared."""
        rng = self.rng
        key = rng.choice(self.data_keys)
        v = self.tag + self.pl(rng.randint(0, 300))
        declared = max(0, len(v) + rng.choice([-3, -2, -1, 1, 2, 3, 10, -len(v)]))
        if rng.random() < 0.5:
            line = b"set %s 0 0 %d\r\n" % (key, declared)
        else:
            line = b"ms %s %d T0\r\n" % (key, declared)
        term = rng.choice([b"\r\n", b"\n", b"", b"\r", b"xx\r\n"])
        return Hostile("length", line + v + term, "resync")

    def h_huge_length(self) -> "Hostile":
        rng = self.rng
        n = rng.choice([5_000_000, 2 ** 31 - 2, 2 ** 31 - 1, 2 ** 32 + 5, 10 ** 9, 1_048_577])
        cmd = rng.choice([b"set", b"add", b"append", b"ms"])
        key = rng.choice(self.data_keys)
        line = (b"ms %s %d\r\n" % (key, n)) if cmd == b"ms" else b"%s %s 0 0 %d\r\n" % (cmd, key, n)
        return Hostile("huge_length", line + self.pl(rng.randint(0, 20000)),
                       rng.choice(["close", "reset"]))

    def pl(self, n: int, binary: bool | None = None) -> bytes:
        return lines_payload(self.rng, n) if self.diff else payload(self.rng, n, binary)

    def h_long_line(self) -> "Hostile":
        rng = self.rng
        n = rng.randint(2049, 5000)
        return Hostile("long_line", payload(rng, n, binary=False).replace(b"\n", b" "), "expect_close")

    def h_binary_first(self) -> "Hostile":
        return Hostile("binary_first", b"\x80" + payload(self.rng, self.rng.randint(0, 100)), "fresh_then_close")

    def h_half_close(self) -> "Hostile":
        reqs = [self._valid_for_mutation() for _ in range(self.rng.randint(1, 3))]
        data = b"".join(r.bytes for r in reqs)
        cut = self.rng.choice([len(data), self.rng.randrange(len(data) + 1)])
        return Hostile("half_close", data[:cut], "half_close")

    def h_quit(self) -> "Hostile":
        """A few requests, some without a reply (noreply, q), then `quit`:
        the server answers what came before and closes."""
        reqs = [self._valid_for_mutation() for _ in range(self.rng.randint(1, 3))]
        data = b"".join(r.bytes for r in reqs)
        if self.rng.random() < 0.6:
            key = self.rng.choice(self.data_keys)
            data += self.rng.choice([b"set %s 0 0 1 noreply\r\nq\r\n" % key, b"delete %s noreply\r\n" % key,
                                     b"ms %s 1 q\r\nq\r\n" % key, b"touch %s 0 noreply\r\n" % key])
        return Hostile("quit", data + b"quit\r\n", "expect_close")

    def h_reset(self) -> "Hostile":
        r = self._valid_for_mutation()
        b = r.bytes
        return Hostile("reset", b[:self.rng.randrange(len(b) + 1)], "reset")

    def h_close_mid(self) -> "Hostile":
        r = self._valid_for_mutation()
        b = r.bytes
        return Hostile("close_mid", b[:self.rng.randrange(len(b) + 1)], "close")

    def _after(self, line: bytes, data) -> str:
        """What must follow a mutated request: a resync, unless a storage line
        may now declare a data block the resync padding cannot complete (one
        that does not end exactly where the request's bytes end: a broken
        line end can make the line run into its data block), or a line is
        long enough that memcached may close the connection for it."""
        full = line + (data or b"")
        pos = 0
        while True:
            nl = full.find(b"\n", pos)
            if nl < 0:
                return "close" if len(full) - pos > 2048 else "resync"
            if nl + 1 - pos > 2048:
                return "close"
            toks = next(memcached_lines(full[pos:nl]), None)
            pos = nl + 1
            if toks and toks[0] in _STORAGE:
                for t in toks[2:]:
                    if swallows(t) and (c_long(t) & 0xFFFFFFFF) + 2 != len(full) - pos:
                        return "close"

    _VOCAB = [b"0", b"1", b"-1", b"-5", b"4294967295", b"4294967296", b"2147483647", b"2147483648",
              b"18446744073709551615", b"18446744073709551616", b"99999999999999999999999",
              b"+1", b"0x10", b"1.5", b"abc", b"noreply", b"q", b"k", b"v", b"b", b"T-1", b"N-1",
              b"N5", b"MZ", b"MA", b"C0", b"I", b"D-1", b"J-1", b"F4294967296", b"O", b"\t", b"\x00",
              b"\xff\xfe", b"\x80", b"=", b"HTTP/1.1", b"GET", b"noreply\x00", b"\x00noreply"]

    def mutate(self, line: bytes, data):
        rng = self.rng
        body, term = _split_term(line)
        op = rng.choice(["nul", "cr", "lf", "token", "token", "token", "length", "data", "spaces",
                         "noreply", "truncate", "case", "longkey"])
        if op == "nul":
            i = rng.randrange(len(body) + 1)
            body = body[:i] + b"\x00" + body[i:]
        elif op in ("cr", "lf"):
            # a lone CR or LF, as the line end or inside the line
            byte = b"\r" if op == "cr" else b"\n"
            if rng.random() < 0.5:
                term = byte
            else:
                i = rng.randrange(len(body) + 1)
                body = body[:i] + byte + body[i:]
        elif op == "token":
            body = self._mutate_token(body)
        elif op == "length" and data is not None:
            toks = body.split(b" ")
            idx = [i for i, t in enumerate(toks) if t.isdigit() and i >= 2]
            if idx:
                i = rng.choice(idx)
                toks[i] = rng.choice([b"%d" % max(0, int(toks[i]) + rng.choice([-2, -1, 1, 2, 7])),
                                      b"-1", b"0", b"4294967296", b"abc", b"2147483647"])
                body = b" ".join(toks)
        elif op == "data" and data is not None:
            d = data[:-2]
            d = rng.choice([d[:max(0, len(d) - rng.randint(1, 3))], d + payload(rng, rng.randint(1, 5)), d])
            data = d + rng.choice([b"\r\n", b"\n", b"\r", b"", b"\r\r\n", b"\x00\r\n"])
        elif op == "spaces":
            body = body.replace(b" ", rng.choice([b"  ", b"\t", b" \t", b"   "]), rng.randint(1, 3))
            if rng.random() < 0.3:
                body = b" " * rng.randint(1, 120) + body
        elif op == "noreply":
            i = rng.choice([len(body), body.find(b" ") if b" " in body else len(body)])
            body = body[:i] + rng.choice([b" noreply", b" noreply noreply", b" q", b" norepl", b" NOREPLY"]) + body[i:]
        elif op == "truncate":
            body = body[:rng.randrange(len(body) + 1)]
        elif op == "case":
            body = body[:2].upper() + body[2:]
        elif op == "longkey":
            body = self._mutate_token(body, key_only=True)
        return body + term, data

    def _mutate_token(self, body: bytes, key_only: bool = False) -> bytes:
        rng = self.rng
        toks = body.split(b" ")
        if len(toks) < 2:
            return body + b" " + rng.choice(self._VOCAB)
        key_idx = [i for i, t in enumerate(toks) if i > 0 and (self.prefix in t or self._is_b64_key(t))]
        if key_only:
            if not key_idx:
                return body
            i = rng.choice(key_idx)
            toks[i] = self._key_variant(toks[i])
            return b" ".join(toks)
        op = rng.choice(["drop", "dup", "replace", "replace", "insert", "swap", "oversize"])
        i = rng.randrange(1, len(toks))
        if op == "drop":
            del toks[i]
        elif op == "dup":
            toks.insert(i, toks[i])
        elif op == "replace":
            toks[i] = self._key_variant(toks[i]) if i in key_idx else rng.choice(self._VOCAB)
        elif op == "insert":
            toks.insert(i, self._key_variant(self.prefix + b"k0") if rng.random() < 0.3 else rng.choice(self._VOCAB))
        elif op == "swap":
            j = rng.randrange(1, len(toks))
            toks[i], toks[j] = toks[j], toks[i]
        else:
            toks[i] = (toks[i][:1] or b"x") + payload(rng, rng.choice([40, 250, 300, 3000]), binary=False).replace(b" ", b"x")
        return b" ".join(toks)

    def _is_b64_key(self, tok: bytes) -> bool:
        return any(tok == b64(k) for k in self.all_keys)

    def _key_variant(self, tok: bytes) -> bytes:
        """A broken key that still carries our tag (and '~', which no model key has)."""
        rng = self.rng
        base = self.prefix + b"~"
        v = rng.choice([
            base + keychars(rng, rng.randint(0, 10)),
            base + b"x" * (MAX_KEY - len(base) + rng.choice([-1, 0, 1, 2, 50])),
            base + b"\x01\x7f\xff",
            base + b"\x00x",
            tok + b"~" + b"y" * rng.choice([1, 245, 300]),
        ])
        if self._is_b64_key(tok):
            return b64(v)
        return v


def canonical_b64(tok: bytes) -> bool:
    try:
        return base64.b64encode(base64.b64decode(tok, validate=True)) == tok
    except (binascii.Error, ValueError):
        return False


def c_long(tok: bytes):
    """`tok` as memcached's safe_strtol reads it (strtol: leading white space
    such as a tab, a sign, digits; then the end or white space), or None."""
    m = re.fullmatch(rb"[\t\n\v\f\r ]*([+-]?\d+)(?:[\t\n\v\f\r ].*)?", tok, re.S)
    if not m:
        return None
    v = int(m.group(1))
    return v if -2 ** 63 <= v < 2 ** 63 else None


def swallows(tok: bytes) -> bool:
    """Whether memcached, reading `tok` as a data length, may wait for (or
    swallow) more than the resync padding: it parses a long and keeps the low
    32 bits as a signed int; up to INT_MAX - 2 is a length."""
    v = c_long(tok)
    if v is None:
        return False
    v &= 0xFFFFFFFF
    return 3000 < v <= 2 ** 31 - 3


@dataclass
class Hostile:
    kind: str
    data: bytes
    after: str      # resync | close | reset | expect_close | fresh_then_close | half_close | binary


def _weighted(rng: random.Random, kinds):
    total = sum(w for _, w in kinds)
    r = rng.random() * total
    for k, w in kinds:
        if r < w:
            return k
        r -= w
    return kinds[0][0]


def _split_term(line: bytes) -> tuple[bytes, bytes]:
    if line.endswith(b"\r\n"):
        return line[:-2], b"\r\n"
    if line.endswith(b"\n"):
        return line[:-1], b"\n"
    return line, b""


def _show(reply) -> str:
    if isinstance(reply, list):
        return "|".join(r.decode() for r in reply)
    return reply.decode()


def _state_text(st) -> str:
    if isinstance(st, Item):
        return f"{len(st.value)} bytes, flags {st.flags}" + (" (number, padding unknown)" if st.loose else "")
    return st


# --------------------------------------------------------------------------
# Isolation checker and connection
# --------------------------------------------------------------------------

class SentLog:
    """The last bytes a client sent (for `key was named by the client`) and
    its last requests with times (for reports)."""

    def __init__(self, cap: int = 4 * 1024 * 1024):
        self.cap = cap
        self.buf = bytearray()
        self.recent: list[tuple[float, int, str, bytes]] = []
        self.lock = threading.Lock()

    def add(self, data: bytes, serial: int, what: str):
        with self.lock:
            self.buf += data
            if len(self.buf) > self.cap:
                del self.buf[:len(self.buf) - self.cap // 2]
            self.recent.append((time.monotonic(), serial, what, data[:65536]))
            if len(self.recent) > 40:
                del self.recent[:20]

    def contains(self, key: bytes) -> bool:
        with self.lock:
            return key in self.buf

    def since(self, t0: float) -> list:
        with self.lock:
            return [r for r in self.recent if r[0] >= t0]


class Findings:
    """Thread-safe collection of everything that went wrong, by class."""

    def __init__(self, limit: int = 60):
        self.lock = threading.Lock()
        self.items: list[dict] = []
        self.counts: dict[str, int] = {}
        self.limit = limit

    def add(self, kind: str, **info):
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            if len(self.items) < self.limit:
                self.items.append({"kind": kind, "time": time.monotonic(), **info})

    def total(self) -> int:
        with self.lock:
            return sum(self.counts.values())


class Checker:
    """The isolation property, on every byte a connection receives: no other
    client's tag anywhere; every key in a reply line carries our tag or was
    named by us."""

    def __init__(self, cid: int, sent: SentLog, report):
        self.own = b"%02d" % cid
        self.sent = sent
        self.report = report      # report(kind, detail, context)
        self.tail = b""
        self.pending = bytearray()
        self.in_long_line = False
        self.seen = 0

    def feed(self, chunk: bytes):
        data = self.tail + chunk
        for m in TAG_RE.finditer(data):
            if m.group(1) != self.own:
                s = max(0, m.start() - 120)
                self.report("foreign tag", f"<{m.group(1).decode()}> in a reply to client {self.own.decode()}",
                            data[s:m.end() + 120])
        self.tail = data[-3:]
        self.seen += len(chunk)
        self.pending += chunk
        start = 0
        while True:
            i = self.pending.find(b"\n", start)
            if i < 0:
                break
            if self.in_long_line:
                self.in_long_line = False
            else:
                self.check_line(bytes(self.pending[start:i]))
            start = i + 1
        if start:
            del self.pending[:start]
        if len(self.pending) > 8192:
            if not self.in_long_line:
                self.check_line(bytes(self.pending[:600]))
                self.in_long_line = True
            self.pending.clear()

    def check_line(self, line: bytes):
        if line.endswith(b"\r"):
            line = line[:-1]
        if line.startswith(b"VALUE ") or line.startswith(b"ME "):
            toks = line.split(b" ")
            if len(toks) > 1:
                self.check_key(toks[1], False, line)
            return
        code = line[:3]
        if code in (b"VA ", b"HD ", b"EN ", b"NS ", b"EX ", b"NF "):
            toks = line.split(b" ")
            is_b = b"b" in toks[1:]
            for t in toks[1:]:
                if t.startswith(b"k"):
                    self.check_key(t[1:], is_b, line)

    def check_key(self, key: bytes, is_b: bool, line: bytes):
        """is_b: the line has a meta `b` flag. A key in base64 is also
        recognised without it (`me` and `mg` show an item stored with `b` in
        base64); a key with a tag cannot be valid base64 ('<')."""
        names = [key]
        try:
            names.append(base64.b64decode(key, validate=True))
        except (binascii.Error, ValueError):
            pass
        for name in names:
            m = TAG_RE.search(name)
            if m and m.group(1) != self.own:
                self.report("foreign key", f"key {name[:80]!r} of client {m.group(1).decode()}", line[:300])
                return
        if any(TAG_RE.search(n) for n in names):
            return
        if not self.sent.contains(key):
            self.report("key never named", f"key {key[:80]!r} in a reply, never sent by this client", line[:300])


class FuzzConn:
    """A non-blocking TCP connection whose every received byte goes through
    a Checker before it is buffered."""

    def __init__(self, addr, checker: Checker, timeout: float = 5.0):
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.checker = checker
        self.buf = bytearray()
        self.eof = False
        self.received = 0
        self.sent = 0

    def _recv_ready(self) -> int:
        n = 0
        for _ in range(64):
            try:
                chunk = self.sock.recv(262144)
            except BlockingIOError:
                break
            except (ConnectionResetError, OSError):
                self.eof = True
                break
            if not chunk:
                self.eof = True
                break
            self.checker.feed(chunk)
            self.buf += chunk
            self.received += len(chunk)
            n += len(chunk)
        return n

    def send(self, data: bytes, cuts=None, pause: float = 0.001, timeout: float = 30.0) -> bool:
        """Sends (in pieces cut at `cuts`), reading meanwhile. False when the
        peer closed or reset."""
        pieces = harness.split_bytes(data, cuts) if cuts else [data]
        deadline = time.monotonic() + timeout
        for p in pieces:
            view = memoryview(p)
            while view:
                if time.monotonic() > deadline:
                    raise TimeoutError("send blocked")
                if self.eof:
                    return False
                r, w, _ = select.select([self.sock], [self.sock], [], 0.5)
                if r:
                    self._recv_ready()
                if w:
                    try:
                        n = self.sock.send(view[:262144])
                        view = view[n:]
                        self.sent += n
                    except BlockingIOError:
                        pass
                    except (BrokenPipeError, ConnectionResetError, OSError):
                        self.eof = True
                        return False
            if cuts and pause:
                time.sleep(pause)
        return True

    def wait_for(self, rx: re.Pattern, timeout: float, trim: bool = False, stall: float | None = None):
        """Reads until rx matches the buffer (returns the match), EOF or the
        timeout (returns None). With `stall`, the timeout is the longest wait
        while bytes keep arriving, and `stall` seconds without a byte end it
        (a reply of a hundred megabytes takes as long as the client needs to
        read it). With trim, bytes already checked that cannot be part of a
        match are dropped as the buffer grows (huge replies)."""
        start = time.monotonic()
        deadline = start + timeout
        last_byte = start
        searched = 0
        while True:
            m = rx.search(self.buf, max(0, searched - 256))
            if m:
                return m
            searched = len(self.buf)
            if trim and len(self.buf) > 8 * 1024 * 1024:
                del self.buf[:len(self.buf) - 4096]
                searched = len(self.buf)
            if self.eof:
                return None
            now = time.monotonic()
            if now >= deadline or (stall is not None and now - last_byte >= stall):
                return None
            r, _, _ = select.select([self.sock], [], [], min(0.2, deadline - now))
            if r and self._recv_ready():
                last_byte = time.monotonic()

    def expect_stream(self, parts, timeout: float, stall: float) -> str | None:
        """Consumes the bytes `parts` ((bytes, count) pairs: each bytes
        repeated count times, in order) as they arrive, comparing as it goes
        so that a reply of any size needs no more memory than one read.
        Returns None when every byte matched, else what went wrong. Bounded
        like wait_for with `stall`."""
        start = time.monotonic()
        deadline = start + timeout
        last_byte = start
        consumed = 0
        for part, count in parts:
            for _ in range(count):
                off = 0
                while off < len(part):
                    if not self.buf:
                        if self.eof:
                            return f"the connection ended after {consumed} bytes of the reply"
                        now = time.monotonic()
                        if now >= deadline or now - last_byte >= stall:
                            return (f"{consumed} bytes of the reply after {now - start:.1f} s, then nothing for "
                                    f"{now - last_byte:.1f} s")
                        r, _, _ = select.select([self.sock], [], [], min(0.2, deadline - now))
                        if r and self._recv_ready():
                            last_byte = time.monotonic()
                        continue
                    k = min(len(part) - off, len(self.buf))
                    if self.buf[:k] != part[off:off + k]:
                        i = next(j for j in range(k) if self.buf[j] != part[off + j])
                        return (f"at byte {consumed + i} of the reply: expected {part[off + i:off + i + 80]!r}, "
                                f"got {bytes(self.buf[i:i + 80])!r}")
                    del self.buf[:k]
                    off += k
                    consumed += k
        return None

    def drain_until_eof(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            r, _, _ = select.select([self.sock], [], [], 0.1)
            if r:
                self._recv_ready()
            if len(self.buf) > 8 * 1024 * 1024:
                self.buf.clear()
        return self.eof

    def take(self, n: int) -> bytes:
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def half_close(self):
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def reset(self):
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def marker_rx(tok: bytes) -> re.Pattern:
    return re.compile(rb"(?:^|\n)(?:EN|HD)(?: [^\r\n]*)? O" + re.escape(tok) + rb"\r\n")


# --------------------------------------------------------------------------
# One isolation client
# --------------------------------------------------------------------------

# How long keys named in requests left unanswered on a closed connection
# stay unknown (see Gen.hold): far longer than a loaded server takes to get
# to what it has read, shorter than the fuzz.
HOLD_SECONDS = 3.0

# A huge multi-get's reply (about 100 MB) is read at the client's pace: it
# fails when nothing arrives for HUGE_GET_STALL_SECONDS, or after
# HUGE_GET_MAX_SECONDS in all.
HUGE_GET_STALL_SECONDS = 5.0
HUGE_GET_MAX_SECONDS = 60.0


class HugeGate:
    """Bounds the huge multi-gets of a whole run: at most `limit`."""

    def __init__(self, limit: int):
        self.left = limit
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True


class IsolationClient:
    """One fuzz client: its own tag, key space, model and connection(s)."""

    MAX_STEPS = 100_000

    def __init__(self, cid: int, addr, seed: int, deadline: float, findings: Findings,
                 registry: dict, huge: HugeGate, p_hostile: float = 0.25, huge_count=(1500, 2500)):
        self.cid = cid
        self.addr = addr
        self.seed = seed
        self.rng = random.Random(seed)
        self.tag = tag_for(cid)
        self.gen = Gen(self.rng, self.tag, self.tag)
        self.deadline = deadline
        self.findings = findings
        self.sent = SentLog()
        registry[cid] = self.sent
        self.registry = registry
        self.huge = huge
        self.huge_count = huge_count
        self.p_hostile = p_hostile
        self.conn: FuzzConn | None = None
        self.serial = 0
        # requests: every request sent (valid, markers, hostile pieces);
        # checked: replies compared with the model (valid requests, markers)
        self.stats = {"requests": 0, "batches": 0, "checked": 0, "exact": 0, "hostile": 0, "resyncs": 0,
                      "connections": 0, "huge": 0, "bytes_in": 0}
        self.last_batch = b""

    # -- reporting -------------------------------------------------------------
    def report(self, kind: str, detail: str, context: bytes = b"", **extra):
        info = {"client": self.cid, "conn": self.serial, "detail": detail,
                "context": context[:600], "sent": [(round(t, 3), s, w, d) for t, s, w, d in self.sent.since(0)][-8:]}
        m = re.search(r"of client (\d\d)|<(\d\d)>", detail)
        if kind in ("foreign tag", "foreign key") and m:
            other = int(m.group(1) or m.group(2))
            if other in self.registry:
                info["other_sent"] = [(round(t, 3), s, w, d) for t, s, w, d in
                                      self.registry[other].since(time.monotonic() - 2)][-8:]
        info.update(extra)
        self.findings.add(kind, **info)

    # -- connection --------------------------------------------------------------
    def connect(self):
        self.close()
        self.serial += 1
        self.stats["connections"] += 1
        checker = Checker(self.cid, self.sent, lambda k, d, c: self.report(k, d, c))
        self.conn = FuzzConn(self.addr, checker)

    def close(self, how: str = "close"):
        if self.conn is not None:
            self.stats["bytes_in"] += self.conn.received
            if how == "reset":
                self.conn.reset()
            else:
                self.conn.close()
            self.conn = None

    def send(self, data: bytes, what: str, cuts=None) -> bool:
        self.sent.add(data, self.serial, what)
        return self.conn.send(data, cuts=cuts)

    def cuts(self, n: int):
        r = self.rng.random()
        if r < 0.75 or n < 2:
            return None
        if r < 0.95:
            return sorted(self.rng.randrange(1, n) for _ in range(self.rng.randint(1, 4)))
        return list(range(1, min(n, 40)))   # the first bytes one by one

    # -- the loop ------------------------------------------------------------------
    def run(self):
        try:
            steps = 0
            while time.monotonic() < self.deadline and steps < self.MAX_STEPS:
                steps += 1
                if self.conn is None or self.conn.eof:
                    self.connect()
                if self.rng.random() < self.p_hostile:
                    self.hostile_step()
                else:
                    self.valid_step()
        except Exception as e:  # noqa: BLE001 - reported as a finding
            import traceback
            self.report("client error", f"{e!r}", traceback.format_exc().encode()[-1500:])
        finally:
            self.close()

    def valid_step(self):
        g = self.gen
        g.begin_batch()
        if self.rng.random() < 0.01 and self.huge.take():
            return self.huge_get()
        reqs = [g.valid() for _ in range(self.rng.randint(1, 6))]
        tok, marker = g.marker()
        payload_ = b"".join(r.bytes for r in reqs) + marker.bytes
        self.last_batch = payload_
        self.stats["requests"] += len(reqs) + 1
        if not self.send(payload_, "valid batch", self.cuts(len(payload_))):
            self.report("closed by the server", "connection closed while sending valid requests",
                        bytes(self.conn.buf[-300:]), batch=payload_[:1500])
            g.poison_all(hold=HOLD_SECONDS)
            self.close()
            return
        m = self.conn.wait_for(marker_rx(tok), timeout=10)
        if m is None:
            self.report("no reply", f"no reply to the batch's marker within 10 s (eof={self.conn.eof})",
                        bytes(self.conn.buf[-600:]), batch=payload_[:1500])
            g.poison_all(hold=HOLD_SECONDS)
            self.close()
            return
        seg = self.conn.take(m.end())
        r = Reader(seg)
        self.stats["batches"] += 1
        try:
            for req in [*reqs, marker]:
                req.check(r)
            if r.pos != len(seg):
                r.fail("bytes left over after every reply was matched")
            self.stats["checked"] += len(reqs) + 1
            self.stats["exact"] += sum(1 for q in reqs if q.want and "|" not in q.want)
        except Mismatch as e:
            self.report("model mismatch", str(e), seg[-1500:],
                        batch=payload_, expected=[q.want[:200] for q in reqs],
                        reply=seg)
            g.poison_all()

    def huge_get(self):
        """A multi-get naming the big key thousands of times."""
        g = self.gen
        big = g.v_big()
        n = self.rng.randint(*self.huge_count)
        line = b"get " + b" ".join([g.big_key] * n) + b"\r\n"
        tok, marker = g.marker()
        data = big.bytes + line + marker.bytes
        self.stats["huge"] += 1
        if not self.send(data, f"huge multi-get ({n} x {len(g.big_key)}-byte key of {g.big_size} bytes)"):
            g.poison_all(hold=HOLD_SECONDS)
            self.close()
            return
        # every byte of the reply is predicted: STORED, n times the value, END, the marker
        value = big.data[:-2]
        parts = [(b"STORED\r\n", 1),
                 (b"VALUE %s 0 %d\r\n" % (g.big_key, len(value)) + value + b"\r\n", n),
                 (b"END\r\nEN O" + tok + b"\r\n", 1)]
        t0 = time.monotonic()
        err = self.conn.expect_stream(parts, timeout=HUGE_GET_MAX_SECONDS, stall=HUGE_GET_STALL_SECONDS)
        self.stats["requests"] += 3
        if err is not None:
            kind = "model mismatch" if err.startswith("at byte") else "no reply"
            self.report(kind, f"huge multi-get ({n} x the big key, {sum(len(p) * c for p, c in parts)} bytes "
                        f"of reply expected; {time.monotonic() - t0:.1f} s): {err} (eof={self.conn.eof}, "
                        f"{self.conn.received} bytes received on this connection)",
                        bytes(self.conn.buf[:300]), batch=b"%s\r\n<%d bytes>\r\n" % (big.line[:-2], len(value))
                        + line[:200] + b"...\r\n" + marker.bytes)
            g.poison_all(hold=HOLD_SECONDS)
            self.close()
            return
        self.stats["checked"] += 3

    def hostile_step(self):
        g = self.gen
        h = g.hostile()
        self.stats["hostile"] += 1
        self.stats["requests"] += 1
        named = g.named(h.data)
        g.poison(h.data)
        if h.after == "resync" and h.data[:1] == b"\x80" and self.conn.sent == 0:
            # the first byte of a connection: memcached speaks its binary
            # protocol from here on, the node closes (README)
            h = Hostile(h.kind, h.data, "binary")
        if h.after != "resync":
            # the connection ends with these bytes, some unanswered
            g.hold(named, HOLD_SECONDS)
        if h.after == "fresh_then_close":
            self.connect()
        ok = self.send(h.data, f"hostile {h.kind}", self.cuts(len(h.data)))
        if not ok:
            g.hold(named, HOLD_SECONDS)
            self.close()
            return
        if h.after == "resync":
            if not self.resync(h.kind, ends_line=h.data.endswith(b"\n")):
                g.hold(named, HOLD_SECONDS)
        elif h.after in ("close", "reset"):
            self.close(h.after)
        elif h.after == "expect_close":
            self.conn.drain_until_eof(2.0)
            self.close()
        elif h.after in ("fresh_then_close", "binary"):
            # memcached answers in its binary protocol, a text-only server
            # closes: either way, read a moment (checked) and go
            self.conn.drain_until_eof(0.3)
            self.close()
        elif h.after == "half_close":
            self.conn.half_close()
            self.conn.drain_until_eof(5.0)
            self.close()

    def resync(self, kind: str, ends_line: bool = True) -> bool:
        # a server may wait for the rest of a short data block: each attempt
        # sends more padding (answered `ERROR` otherwise)
        pads = [b"" if ends_line else b"\r\n", b"\r\n", b"\r\n" * 200, b"\r\n" * 2100]
        waits = [0.25, 0.5, 1.5, 3.0]
        for pad, wait in zip(pads, waits):
            tok, marker = self.gen.marker()
            self.stats["requests"] += 1
            if not self.send(pad + marker.bytes, "resync marker"):
                break
            m = self.conn.wait_for(marker_rx(tok), timeout=wait, trim=True)
            if m is not None:
                self.conn.take(m.end())
                self.stats["resyncs"] += 1
                return True
            if self.conn.eof:
                break
        if self.conn is not None and not self.conn.eof:
            self.report("no reply", f"no reply to 4 resync markers after hostile input ({kind})",
                        bytes(self.conn.buf[-300:]))
        self.close()
        return False


# --------------------------------------------------------------------------
# Differential
# --------------------------------------------------------------------------

@dataclass
class Piece:
    """Part of a differential stream: `text` is parsed as command lines, then
    `block` is a data block the text's last line declares (valid requests)."""
    text: bytes
    block: bytes = b""
    barrier: bool = False     # send `mn` and wait for MN before this piece
    what: str = ""

    @property
    def data(self) -> bytes:
        return self.text + self.block


@dataclass
class DiffCase:
    name: str
    pieces: list
    flags: list = field(default_factory=list)
    split: str = "one"        # one | chunks | bytes
    split_seed: int = 0

    @property
    def payload(self) -> bytes:
        return b"".join(p.data for p in self.pieces)


_RETRIEVAL = {b"get", b"gets", b"gat", b"gats"}
_NOT_IN_DIFF = {b"stats", b"lru_crawler", b"slabs", b"lru", b"watch", b"cache_memlimit", b"flush_all"}


def diff_adjust(piece: Piece) -> list[Piece] | None:
    """Applies the differential's exclusions to one piece: the piece (split
    where a barrier must come between two of its lines), or None to drop it.

    Deliberate differences (README "Deliberate differences from memcached
    1.6.18"), each excluded narrowly:
    - a connection's first byte 0x80: diff_case never starts with it;
    - `version`: corpus.normalize;
    - a multi-get with an over-long key: a barrier before it (memcached drops
      the unsent replies of the requests pipelined before it) and, for
      gat/gats, the over-long key moved first (memcached touches the keys
      before it, the node refuses the request whole);
    - an `mg` or `ma` refused for its opaque: opaques over 32 bytes are cut
      to 32 (memcached bumps, touches, creates or changes the item before
      noticing, and `ma` reports a non-numeric value first);
    - items in segments: `me` lines normalized (me-layout), no `stats`,
      `slabs`, `lru_crawler`; cache_memlimit only to sizes that evict nothing;
    - a connection closed for an HTTP request or 2048 bytes without a
      newline: a barrier before it (memcached drops the replies it has not
      written yet).
    Not deterministic on either server, so made so:
    - a `quit` line: a barrier before it. Both servers write every reply
      before it, then close; but the stream goes on after it, so they close
      with input unread, and Linux then resets the connection, dropping
      whatever replies are still in the server's send queue (a few lines to
      thousands, by how fast the client's kernel took them: timing, not the
      server). With the barrier nothing is left to drop.
    Not deterministic on memcached itself, so not compared:
    - a non-get line of 2049-16384 bytes (memcached accepts it only if it
      arrives in one read); flush_all with a delay (the clock), and any
      flush_all under -C (diff_case: memcached without CAS also hides items
      stored later in the same second);
    - a data block the stream leaves unfinished beyond what the final
      padding completes (see leaves_long_block): memcached holds the replies
      to earlier requests until the block is complete, the node does not.
    A barrier before a line in the middle of a piece splits the piece there.
    """
    if leaves_long_block(piece.data):
        return None
    out: list[Piece] = []
    out_lines: list[bytes] = []
    barrier = piece.barrier
    parts = piece.text.split(b"\n")
    for idx, part in enumerate(parts):
        last = idx == len(parts) - 1
        full = part + (b"" if last else b"\n")
        text = part.split(b"\0", 1)[0]
        toks = [t for t in text.rstrip(b"\r").split(b" ") if t]
        multi_get = bool(toks) and toks[0] in (b"get", b"gets")
        needs_barrier = False
        if (not last or piece.block) and 2048 < len(part) + 1 <= 16384 and not multi_get:
            return None
        if last and not piece.block and len(part) > 2048 and not multi_get:
            needs_barrier = True          # closes the connection
        if toks:
            cmd = toks[0]
            if cmd in _NOT_IN_DIFF:
                ok = (cmd == b"flush_all" and all(t in (b"0", b"noreply") for t in toks[1:])) or \
                     (cmd == b"cache_memlimit" and toks[1:] in ([b"64"], [b"100"], [b"1024"]))
                if not ok:
                    return None
            if cmd in _RETRIEVAL:
                first = 2 if cmd in (b"gat", b"gats") else 1
                long_keys = [k for k in toks[first:] if len(k) > MAX_KEY]
                if long_keys:
                    needs_barrier = True
                    if first == 2 and b"\0" not in part and b"\t" not in part:
                        rest = list(toks[first:])
                        rest.remove(long_keys[0])
                        end = b"\r" if part.endswith(b"\r") else b""
                        full = b" ".join([*toks[:2], long_keys[0], *rest]) + end + (b"" if last else b"\n")
            elif cmd in (b"mg", b"ma"):
                nul = part.find(b"\0")
                head, tail = (part, b"") if nul < 0 else (part[:nul], part[nul:])
                cr = head.endswith(b"\r")
                hts = (head[:-1] if cr else head).split(b" ")
                for i, t in enumerate(hts):
                    if i >= 2 and t.startswith(b"O") and len(t) > 32:
                        hts[i] = t[:32]
                full = b" ".join(hts) + (b"\r" if cr else b"") + tail + (b"" if last else b"\n")
            if toks[-1].startswith(b"HTTP/"):
                needs_barrier = True          # an unknown command ending in HTTP/...: closes
            if cmd == b"quit":
                needs_barrier = True          # closes, resetting if bytes follow (docstring)
        if needs_barrier:
            if out_lines:
                out.append(Piece(b"".join(out_lines), b"", barrier, piece.what))
                out_lines = []
            barrier = True
        out_lines.append(full)
    out.append(Piece(b"".join(out_lines), piece.block, barrier, piece.what))
    return out


_STORAGE = {b"set", b"add", b"replace", b"append", b"prepend", b"cas", b"ms"}


def leaves_line_open(data: bytes) -> bool:
    """Whether `data`, read as memcached reads a stream (a storage line whose
    length parses is followed by that many bytes and 2 more of data), ends
    inside a command line rather than after one or inside a data block."""
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0:
            return True
        toks = next(memcached_lines(data[pos:nl]), None)
        pos = nl + 1
        if toks and toks[0] in _STORAGE:
            length = c_long(toks[2] if toks[0] == b"ms" else toks[4]) if len(toks) > (2 if toks[0] == b"ms" else 4) else None
            if length is not None and length >= 0:
                pos += length + 2
    return False


def leaves_long_block(data: bytes, padding: int = 3000) -> bool:
    """Whether `data`, read as command lines the way memcached reads them,
    may end inside a data block that more than `padding` bytes would still
    not complete (conservatively: any token of a storage line that reads as
    such a length counts, and lines inside data blocks are read too)."""
    pos = 0
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            return False
        line, pos = data[pos:nl], nl + 1
        toks = next(memcached_lines(line), None)
        if not toks or toks[0] not in _STORAGE:
            continue
        for t in toks[2:]:
            if swallows(t) and pos + (c_long(t) & 0xFFFFFFFF) + 2 > len(data) + padding:
                return True


def _long_segment(data: bytes):
    """(start, end) of the first run of more than 2048 bytes without a
    newline that does not start like a multi-get, or None."""
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        end = len(data) if nl < 0 else nl + 1
        if end - pos > 2048:
            head = data[pos:pos + 106].lstrip(b" ")
            if not (head.startswith(b"get ") or head.startswith(b"gets ")):
                return pos, end
        pos = end
    return None


def barrier_request(i: int) -> bytes:
    """Sent before piece i when it needs a barrier: its reply `EN Ofuzz-barrier-i`
    (the key is one no case stores) cannot come from anything else."""
    return b"mg fuzz-barrier Ofuzz-barrier-%d\r\n" % i


def _reply_rx(opaque: bytes) -> re.Pattern:
    return re.compile(rb"(?:^|\n)(?:EN|HD)[^\r\n]* O" + re.escape(opaque) + rb"\r\n\Z")


SENTINEL = b"mg fuzz-end Ofuzz-end-sentinel\r\n"
_SENTINEL_RX = _reply_rx(b"fuzz-end-sentinel")


def stream_bytes(pieces) -> bytes:
    """What a case sends, barriers included (see run_side)."""
    return b"".join((barrier_request(i) if p.barrier and i else b"") + p.data for i, p in enumerate(pieces))


def diff_case(seed: int, index: int) -> DiffCase:
    """A seeded stream for one differential case: 3-40 pieces, valid and hostile.

    A run of more than 2048 bytes without a newline is only kept at the very
    end of the stream (the server closes the connection): anywhere else
    memcached accepts or refuses it depending on how its reads cut the stream."""
    rng = random.Random(seed * 1_000_003 + index)
    flags = random.Random(seed * 1_000_003 + index + 0x5BD1E995).choice(
        [[], [], [], [], ["-C"], ["-I", "2m"]])
    g = Gen(rng, b"", b"", diff=True, big_size=rng.choice([100, 3000]))
    g.data_keys = [b"k%d" % i for i in range(4)]
    g.num_keys = [b"n%d" % i for i in range(2)]
    g.model = {k: ABSENT for k in g.all_keys}
    pieces = []
    for _ in range(rng.randint(3, 40)):
        r = rng.random()
        if r < 0.6:
            req = g.valid()
            p = Piece(req.line, req.data or b"", False, "valid")
        elif r < 0.97:
            h = g.hostile(allow_close=rng.random() < 0.2)
            if h.after == "fresh_then_close":
                continue          # a new connection: not part of this stream
            p = Piece(h.data, b"", False, "hostile " + h.kind)
        else:
            c = rng.choice([b"flush_all\r\n", b"flush_all 0\r\n", b"flush_all noreply\r\n", b"version\r\n",
                            b"verbosity 1\r\n", b"shutdown\r\n", b"quit\r\n", b"cache_memlimit 64\r\n",
                            b"mn\r\n", b"\r\n"])
            p = Piece(c, b"", False, "admin")
        if pieces and leaves_line_open(pieces[-1].data):
            # The last piece left a command line open: the server reads this piece's
            # first line as the rest of it, so the exclusions must see them as one.
            joined = pieces.pop()
            p = Piece(joined.data + p.text, p.block, joined.barrier, joined.what + " + " + p.what)
        adjusted = diff_adjust(p)
        if adjusted is None:
            continue
        if "-C" in flags and any(toks[0] == b"flush_all" for toks in memcached_lines(p.data)):
            # without CAS memcached also hides what is stored later in the
            # second of the flush_all: on the clock, not comparable
            continue
        for p in adjusted:
            if not p.data or (not pieces and p.data[:1] == b"\x80"):
                continue
            pieces.append(p)
    for _ in range(100):
        data = stream_bytes(pieces)
        seg = _long_segment(data)
        if seg is None or seg[1] == len(data) and not data.endswith(b"\n"):
            break
        # drop the piece where the run starts
        pos, i = 0, 0
        for i, p in enumerate(pieces):
            pos += len(p.data) + (len(barrier_request(i)) if p.barrier and i else 0)
            if pos > seg[0]:
                break
        del pieces[i]
    if pieces and _long_segment(stream_bytes(pieces)):
        pieces[-1].barrier = True          # a closing run: earlier replies written first
    split = rng.choices(["one", "chunks", "bytes"], [70, 25, 5])[0]
    if split == "bytes" and sum(len(p.data) for p in pieces) > 400:
        split = "chunks"
    return DiffCase(f"fuzz_{seed}_{index}", pieces, flags, split, rng.randrange(2 ** 31))


def sweep_cases() -> list[DiffCase]:
    """The sweep (sweep_lines) as differential cases, one per command of
    SWEEP_COMMANDS: three items stored, then every broken form of the
    command, each a piece of its own (so diff_adjust applies to each)."""
    setup = [Piece(b"set k0 0 0 3\r\n", b"xyz\r\n", False, "setup"), Piece(b"set k1 7 0 3\r\n", b"abc\r\n", False, "setup"),
             Piece(b"set n0 0 0 2\r\n", b"10\r\n", False, "setup")]
    keys = {b"{K0}": b"k0", b"{K1}": b"k1", b"{N0}": b"n0", b"{KEY}": b"~" + b"x" * MAX_KEY}
    cases = []
    for j, command in enumerate(SWEEP_COMMANDS):
        name = command[0].split(b" ")[0].decode()
        pieces = list(setup)
        for what, data in sweep_lines(keys, [command]):
            adjusted = diff_adjust(Piece(data, b"", False, "sweep " + what))
            if adjusted:
                pieces += [p for p in adjusted if p.data]
        cases.append(DiffCase(f"sweep_{j}_{name}", pieces, [], "one", 0))
    return cases


DIFF_NORMS = ["me-times", "me-layout"]


def _cuts_for(case: DiffCase, data: bytes, salt: int):
    if case.split == "one" or len(data) < 2:
        return None
    if case.split == "bytes":
        return 1
    rng = random.Random(case.split_seed + salt)
    return sorted(rng.randrange(1, len(data)) for _ in range(rng.randint(1, 3)))


# memcached's LRU maintainer and crawler threads hold item references at
# moments of their own: an incr/decr then stores a new item instead of
# rewriting the number in place (no space padding), and `me` shows fetch=
# changing. Both servers get these flags (the node ignores them).
DIFF_BASE_FLAGS = ["-o", "no_lru_maintainer,no_lru_crawler"]
FINAL_PADDING = b"\r\n" * 1600


def run_side(binary: str, case: DiffCase):
    """(transcript bytes, closed, alive, log) of one server for the case.
    After the pieces: `\r\n` if the stream does not end a line, then the
    `version` sentinel, unless the stream ends in a run that closes."""
    srv = harness.start_server(binary, DIFF_BASE_FLAGS + list(case.flags))
    try:
        conn = harness.RawConn(srv.addr, timeout=10)
        out = bytearray()
        try:
            for i, p in enumerate(case.pieces):
                if conn.eof or conn.send_failed:
                    break
                if p.barrier and i > 0:
                    conn.send(barrier_request(i))
                    rx = _reply_rx(b"fuzz-barrier-%d" % i)
                    conn._fill(lambda b, rx=rx: rx.search(b, max(0, len(b) - 200)) is not None, quiet=2.0, timeout=5)
                conn.send(p.data, split=_cuts_for(case, p.data, i))
            data = stream_bytes(case.pieces)
            closing = _long_segment(data) is not None
            if not (conn.eof or conn.send_failed or closing):
                # enough empty lines to complete any short data block a
                # hostile piece left pending (memcached holds its earlier
                # replies while it waits for one), then the sentinel
                conn.send(FINAL_PADDING + SENTINEL)
            # a long quiet period: under load a server can pause for a second
            out += conn.read_until(lambda b: _SENTINEL_RX.search(b, max(0, len(b) - 200)) is not None,
                                   quiet=5.0, timeout=20)
            closed = conn.eof
        finally:
            conn.close()
        alive = srv.alive()
        return bytes(out), closed, alive, ("" if alive else srv.log())
    finally:
        srv.stop()


@dataclass
class DiffResult:
    same: bool
    ref: bytes
    tgt: bytes
    note: str = ""
    tgt_dead: str = ""
    error: str = ""


def run_diff(case: DiffCase, ref_bin: str, tgt_bin: str) -> DiffResult:
    box: dict = {}

    def side(label, binary):
        try:
            box[label] = run_side(binary, case)
        except BaseException as e:  # noqa: BLE001
            box[label] = e

    ts = [threading.Thread(target=side, args=("ref", ref_bin)), threading.Thread(target=side, args=("tgt", tgt_bin))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=60)
    for label in ("ref", "tgt"):
        if isinstance(box.get(label), BaseException) or label not in box:
            return DiffResult(False, b"", b"", error=f"{label}: {box.get(label)!r}")
    (ra, rc, _, _), (ta, tc, talive, tlog) = box["ref"], box["tgt"]
    a = corpus.normalize(ra + (b"<connection closed>" if rc else b""), DIFF_NORMS)
    b = corpus.normalize(ta + (b"<connection closed>" if tc else b""), DIFF_NORMS)
    same, note = corpus.compare(a, b)
    if not talive:
        return DiffResult(False, a, b, note, tgt_dead=tlog)
    return DiffResult(same, a, b, note)


def reference_stable(case: DiffCase, ref_bin: str, ref_out: bytes, runs: int = 3) -> bool:
    """Whether memcached gives the same (normalized) reply to the case `runs`
    more times. Some input is answered differently from run to run (how its
    reads cut the stream decides); a difference from the node there proves
    nothing."""
    for _ in range(runs):
        out, closed, _, _ = run_side(ref_bin, case)
        if corpus.normalize(out + (b"<connection closed>" if closed else b""), DIFF_NORMS) != ref_out:
            return False
    return True


def shrink(case: DiffCase, fails, deadline: float, max_trials: int = 120) -> tuple[DiffCase, int]:
    """Drops pieces (ddmin-style) while fails(case) stays true; then tries
    sending in one piece. Bounded by trials and time."""
    trials = 0
    pieces = list(case.pieces)

    def attempt(ps, split=None) -> bool:
        nonlocal trials
        trials += 1
        c = DiffCase(case.name, ps, case.flags, split or case.split, case.split_seed)
        return fails(c)

    n = 2
    while len(pieces) >= 2 and trials < max_trials and time.monotonic() < deadline:
        chunk = max(1, (len(pieces) + n - 1) // n)
        reduced = False
        for i in range(0, len(pieces), chunk):
            if trials >= max_trials or time.monotonic() >= deadline:
                break
            cand = pieces[:i] + pieces[i + chunk:]
            if cand and attempt(cand):
                pieces = cand
                n = max(2, n - 1)
                reduced = True
                break
        if not reduced:
            if chunk == 1:
                break
            n = min(len(pieces), n * 2)
    split = case.split
    if split != "one" and trials < max_trials and time.monotonic() < deadline and attempt(pieces, "one"):
        split = "one"
    return DiffCase(case.name, pieces, case.flags, split, case.split_seed), trials


# --------------------------------------------------------------------------
# Corpus-format reproducers
# --------------------------------------------------------------------------

def _esc_run(b: bytes) -> str:
    out = []
    for i, c in enumerate(b):
        ch = chr(c)
        if c == 0x5C:
            out.append("\\\\")
        elif c == 0x0D:
            out.append("\\r")
        elif c == 0x0A:
            out.append("\\n")
        elif c == 0x09:
            out.append("\\t")
        elif c == 0:
            out.append("\\0")
        elif c == 0x7B:
            out.append("\\x7b")
        elif 0x20 < c < 0x7F or (c == 0x20 and 0 < i < len(b) - 1):
            out.append(ch)
        else:
            out.append("\\x%02x" % c)
    return "".join(out)


def _esc_body(b: bytes) -> str:
    """Escapes, with runs of 20+ equal bytes as {{rep(...)}}."""
    out, i = [], 0
    while i < len(b):
        j = i
        while j < len(b) and b[j] == b[i]:
            j += 1
        if j - i >= 20:
            out.append("{{rep(%r, %d)}}" % (bytes([b[i]]), j - i))
            i = j
            continue
        k = i
        while k < len(b):
            j = k
            while j < len(b) and b[j] == b[k]:
                j += 1
            if j - k >= 20:
                break
            k = j
        out.append(_esc_run(b[i:k]))
        i = k
    s = "".join(out)
    if s[:1] in ("@", "#") or s.startswith("==="):
        s = "\\x%02x" % ord(s[0]) + s[1:]
    return s


def corpus_lines(data: bytes) -> list[str]:
    """`data` as corpus payload lines (see corpus.py for the escapes)."""
    lines = []
    for part in re.split(rb"(?<=\n)", data):
        if not part:
            continue
        if part.endswith(b"\r\n"):
            lines.append(_esc_body(part[:-2]) if len(part) > 2 else "\\r\\n")
        elif part.endswith(b"\n"):
            lines.append(_esc_body(part[:-1]) + "\\n")
        else:
            lines.append(_esc_body(part) + "\\z")
    return lines


def corpus_text(case: DiffCase, comment: str = "") -> str:
    out = [f"=== {case.name}"]
    for c in comment.splitlines():
        out.append(f"# {c}")
    if case.flags:
        out.append("@flags " + " ".join(case.flags))
    if case.split == "bytes":
        out.append("@split 1")
    elif case.split == "chunks":
        cuts, pos = [], 0
        for i, p in enumerate(case.pieces):
            c = _cuts_for(case, p.data, i)
            if c:
                cuts += [pos + x for x in c]
            pos += len(p.data)
        if cuts:
            out.append("@split at " + ",".join(str(c) for c in cuts))
    for i, p in enumerate(case.pieces):
        if p.barrier and i > 0:
            out.append(barrier_request(i)[:-2].decode())
            out.append("@wait 0.3")
        out += corpus_lines(p.data)
    return "\n".join(out) + "\n"


def corpus_payload(text: str) -> bytes:
    """The bytes a corpus case text sends (for checking a reproducer)."""
    import tempfile
    import os
    fd, path = tempfile.mkstemp(suffix=".txt")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        [c] = corpus.parse_file(path)
        return c.payload
    finally:
        os.unlink(path)


def expected_corpus_payload(case: DiffCase) -> bytes:
    return stream_bytes(case.pieces)
