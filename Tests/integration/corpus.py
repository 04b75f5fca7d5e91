"""The differential corpus: parser, runner and normalizers.

A corpus file (corpus/*.txt) holds named cases. Each case is a byte stream
sent to a fresh reference memcached and to a fresh target server started with
the same flags; the replies must be byte-identical after the case's named
normalizations.

File format
-----------
    === case_name                  starts a case (name: [A-Za-z0-9_.-]+)
    # text                         comment (ignored anywhere)
    @flags -I 2m -C                extra server flags for both servers
    @split 1 | N | at 3,17 | lines | all
                                   how the stream is sent: 1 byte per send,
                                   N-byte chunks, cut at offsets, one send
                                   per corpus line, or in one send (default)
    @pause 0.002                   seconds between split sends (default 2 ms)
    @sentinel off                  do not append `version\\r\\n` (default on)
    @norm NAME ...                 extra normalizations (see NORMALIZERS)
    @quiet 0.5                     quiet period that ends reading (seconds)
    @wait 1.5                      (between payload lines) send what came
                                   before, wait this long, then go on
    @exits                         the case shuts the server down: both must
                                   exit (memcached takes about a second)
    @differs REASON                a deliberate difference from memcached:
                                   the target must answer exactly the
                                   `@target` lines instead of memcached's bytes
    @target LINE                   one line of that answer (escapes decoded,
                                   `\r\n` appended as for payload lines)
    anything else                  a payload line

Payload lines: escapes \\r \\n \\t \\0 \\\\ \\xNN \\z are decoded; a line gets
`\\r\\n` appended unless it ends with an escaped `\\n` (already terminated) or
with `\\z` (no terminator at all; the `\\z` itself is removed). `{{ expr }}`
inserts the bytes of a Python expression over the helpers in MACROS (for
250-byte keys, thousands of keys, big values). Blank lines are ignored; write
an empty command line as `\\r\\n`. A payload line that must start with `@`,
`#` or `===` is written with `\\x40`, `\\x23`, `\\x3d`.

The sentinel: unless `@sentinel off`, `version\\r\\n` is sent after the
payload and reading stops when the reply ends with the `VERSION ...` line
(or at EOF / after the quiet period). This keeps every case fast without
guessing how long a server needs.
"""

from __future__ import annotations

import base64
import difflib
import glob
import os
import re
import threading
import time
from dataclasses import dataclass, field

import harness

CORPUS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
SENTINEL = b"version\r\n"
_SENTINEL_END = re.compile(rb"(?:^|\n)VERSION [^\r\n]*\r\n\Z")


# --------------------------------------------------------------------------
# Macros available inside {{ }}
# --------------------------------------------------------------------------

def _rep(s, n):
    return (s.encode("latin-1") if isinstance(s, str) else s) * n


def _keys(n, prefix="k", start=0):
    return " ".join(f"{prefix}{i}" for i in range(start, start + n))


def _sets(n, prefix="k", value="v", start=0, cmd="set", tail=""):
    out = []
    for i in range(start, start + n):
        v = f"{value}{i}"
        out.append(f"{cmd} {prefix}{i} {i % 7} 0 {len(v)}{tail}\r\n{v}\r\n")
    return "".join(out)


def _blob(n, seed=1):
    """n deterministic pseudo-random bytes (all 256 values occur)."""
    x = seed & 0xFFFFFFFF or 1
    out = bytearray()
    for _ in range(n):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        out.append(x & 0xFF)
    return bytes(out)


def _b64(s):
    if isinstance(s, str):
        s = s.encode("latin-1")
    return base64.b64encode(s)


MACROS = {
    "rep": _rep, "keys": _keys, "sets": _sets, "blob": _blob, "b64": _b64,
    "allbytes": lambda: bytes(range(256)), "len": len, "str": str, "range": range,
}


def _eval_macro(expr: str, where: str) -> bytes:
    try:
        # Globals, not locals: a generator expression sees only globals.
        v = eval(expr, {"__builtins__": {}, **MACROS})  # our own data file
    except Exception as e:  # pragma: no cover - corpus authoring error
        raise ValueError(f"{where}: bad macro {{{{{expr}}}}}: {e}") from e
    if isinstance(v, int):
        v = str(v)
    if isinstance(v, str):
        v = v.encode("latin-1")
    return bytes(v)


# --------------------------------------------------------------------------
# Escapes
# --------------------------------------------------------------------------

_ESC = {"r": b"\r", "n": b"\n", "t": b"\t", "0": b"\0", "\\": b"\\"}


def decode_escapes(s: str, where: str) -> tuple[bytes, bool]:
    """Return (bytes, no_terminator) where no_terminator is True when the
    line ended with \\z or an escaped \\n."""
    out = bytearray()
    i = 0
    no_term = False
    while i < len(s):
        c = s[i]
        if c != "\\":
            out += c.encode("latin-1")
            i += 1
            continue
        if i + 1 >= len(s):
            raise ValueError(f"{where}: dangling backslash")
        e = s[i + 1]
        if e in _ESC:
            out += _ESC[e]
            i += 2
            if e == "n" and i == len(s):
                no_term = True
        elif e == "x":
            out.append(int(s[i + 2:i + 4], 16))
            i += 4
        elif e == "z":
            if i + 2 != len(s):
                raise ValueError(f"{where}: \\z must end the line")
            no_term = True
            i += 2
        else:
            raise ValueError(f"{where}: unknown escape \\{e}")
    return bytes(out), no_term


def decode_line(line: str, where: str) -> bytes:
    parts = re.split(r"(\{\{.*?\}\})", line)
    out = bytearray()
    no_term = False
    for idx, p in enumerate(parts):
        if p.startswith("{{") and p.endswith("}}"):
            out += _eval_macro(p[2:-2].strip(), where)
            no_term = False
        elif p:
            b, nt = decode_escapes(p, where)
            out += b
            no_term = nt if idx == len(parts) - 1 else False
    if not no_term:
        out += b"\r\n"
    return bytes(out)


# --------------------------------------------------------------------------
# Normalizers: each is narrow and must be named by the case that needs it.
# `version` is always on (the sentinel answers with it).
# --------------------------------------------------------------------------

_METADUMP_LINE = re.compile(rb"key=(\S+) exp=(-?\d+) la=(\d+) (cas=\d+ fetch=(?:yes|no) cls=\d+ size=\d+\n)")
_METADUMP_RUN = re.compile(rb"(?m)^(?:key=\S+ exp=-?\d+ la=\d+ cas=\d+ fetch=(?:yes|no) cls=\d+ size=\d+\n)+")


def _metadump(data: bytes) -> bytes:
    """`lru_crawler metadump` lines: each dump's lines sorted (memcached lists
    them in LRU order, the node in its hash order); `la=` masked and `exp=`
    rewritten as `exp-la=<seconds>` (-1 kept), as both are Unix times of
    each process's own clock. What is left is compared exactly, except that
    `exp-la=` may differ by one clock tick (see compare)."""
    def line(m):
        exp, la = m.group(2), int(m.group(3))
        ttl = b"exp=-1" if exp == b"-1" else b"exp-la=%d" % (int(exp) - la)
        return b"key=%s %s la=<t> %s" % (m.group(1), ttl, m.group(4))

    def run(m):
        lines = _METADUMP_LINE.sub(line, m.group(0)).splitlines(keepends=True)
        return b"".join(sorted(lines))
    return _METADUMP_RUN.sub(run, data)


NORMALIZERS = {
    # The version string differs between memcached and the node.
    "version": [(re.compile(rb"(?m)^VERSION [^\r\n]*\r$"), rb"VERSION <v>\r")],
    # Whole STAT blocks collapse to one marker: only framing is compared.
    # Values (pid, uptime, rusage, addresses) differ between any two
    # processes, and the field sets of stats settings/slabs/conns are
    # memcached internals; test_stats.py checks the fields that matter.
    "stat-lines": [(re.compile(rb"(?m)(?:^STAT [^\r\n]*\r\n)+"), rb"STAT <lines>\r\n")],
    # `me` reports seconds since last access and remaining TTL: both depend
    # on when the clock ticked in each process.
    "me-times": [(re.compile(rb"(?m)^(ME \S+ .*)\bla=\d+"), rb"\1la=<s>"),
                 (re.compile(rb"(?m)^(ME \S+ .*)\bexp=\d+"), rb"\1exp=<s>")],
    # `me` slab class and item size are memcached's internal memory layout.
    "me-layout": [(re.compile(rb"(?m)^(ME \S+ .*)\bcls=\d+"), rb"\1cls=<c>"),
                  (re.compile(rb"(?m)^(ME \S+ .*)\bsize=\d+"), rb"\1size=<n>")],
    # `lru_crawler metadump`: order and clocks (see _metadump).
    "metadump": [_metadump],
}


def normalize(data: bytes, names) -> bytes:
    for name in ["version", *names]:
        for rule in NORMALIZERS[name]:
            if callable(rule):
                data = rule(data)
                continue
            rx, repl = rule
            # apply repeatedly: patterns anchored per line may overlap
            prev = None
            while prev != data:
                prev = data
                data = rx.sub(repl, data)
    return data


# --------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------

@dataclass
class Case:
    name: str
    file: str
    line: int
    flags: list[str] = field(default_factory=list)
    split: object = None            # None | int | list[int] | "lines"
    pause: float = 0.002
    sentinel: bool = True
    norms: list[str] = field(default_factory=list)
    quiet: float | None = None
    # segments: list of (list of line-bytes, wait-after seconds)
    segments: list = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    exits: bool = False             # the case shuts the server down
    differs: str | None = None      # why the target deliberately differs
    target_lines: list = field(default_factory=list)

    @property
    def target_expected(self) -> bytes:
        return b"".join(self.target_lines)

    @property
    def payload(self) -> bytes:
        return b"".join(b"".join(lines) for lines, _ in self.segments)


def _parse_split(arg: str, where: str):
    arg = arg.strip()
    if arg in ("all", ""):
        return None
    if arg == "lines":
        return "lines"
    if arg.startswith("at "):
        return [int(x) for x in arg[3:].replace(" ", "").split(",") if x]
    if arg.isdigit():
        return int(arg)
    raise ValueError(f"{where}: bad @split {arg!r}")


def parse_file(path: str) -> list[Case]:
    cases: list[Case] = []
    cur: Case | None = None
    base = os.path.basename(path)
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            where = f"{base}:{n}"
            if line.startswith("=== "):
                name = line[4:].strip()
                if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                    raise ValueError(f"{where}: bad case name {name!r}")
                cur = Case(name=name, file=base, line=n)
                cur.segments.append(([], 0.0))
                cases.append(cur)
                continue
            if not line.strip():
                continue
            if line.startswith("#"):
                if cur is not None:
                    cur.comments.append(line[1:].strip())
                continue
            if cur is None:
                raise ValueError(f"{where}: text before the first case")
            if line.startswith("@"):
                word, _, arg = line[1:].partition(" ")
                if word == "flags":
                    cur.flags = arg.split()
                elif word == "split":
                    cur.split = _parse_split(arg, where)
                elif word == "pause":
                    cur.pause = float(arg)
                elif word == "sentinel":
                    cur.sentinel = arg.strip() != "off"
                elif word == "norm":
                    for nm in arg.split():
                        if nm not in NORMALIZERS:
                            raise ValueError(f"{where}: unknown normalizer {nm}")
                        cur.norms.append(nm)
                elif word == "exits":
                    cur.exits = True
                elif word == "differs":
                    cur.differs = arg.strip()
                elif word == "target":
                    cur.target_lines.append(decode_line(arg, where))
                elif word == "quiet":
                    cur.quiet = float(arg)
                elif word == "wait":
                    lines, _ = cur.segments[-1]
                    cur.segments[-1] = (lines, float(arg))
                    cur.segments.append(([], 0.0))
                else:
                    raise ValueError(f"{where}: unknown directive @{word}")
                continue
            cur.segments[-1][0].append(decode_line(line, where))
    return cases


def load_all(directory: str = CORPUS_DIR) -> list[Case]:
    out: list[Case] = []
    seen: dict[str, str] = {}
    for path in sorted(glob.glob(os.path.join(directory, "*.txt"))):
        for c in parse_file(path):
            if c.name in seen:
                raise ValueError(f"duplicate case name {c.name} in {c.file} and {seen[c.name]}")
            seen[c.name] = c.file
            out.append(c)
    return out


# --------------------------------------------------------------------------
# Running one case against one server
# --------------------------------------------------------------------------

@dataclass
class Transcript:
    data: bytes
    closed: bool
    seconds: float

    def shown(self) -> bytes:
        return self.data + (b"<connection closed>" if self.closed else b"")


def _sentinel_seen(buf: bytes) -> bool:
    return _SENTINEL_END.search(buf) is not None


def run_case(case: Case, addr) -> Transcript:
    t0 = time.monotonic()
    conn = harness.RawConn(addr, timeout=10)
    out = bytearray()
    try:
        nseg = len(case.segments)
        for i, (lines, wait) in enumerate(case.segments):
            last = i == nseg - 1
            if last and case.sentinel:
                lines = [*lines, SENTINEL]
            if case.split == "lines":
                for ln in lines:
                    conn.send(ln)
                    time.sleep(case.pause)
            else:
                conn.send(b"".join(lines), split=case.split, pause=case.pause)
            if conn.send_failed:
                break
            if wait:
                conn._fill(None, quiet=wait, timeout=wait)
        if case.sentinel:
            quiet = case.quiet if case.quiet is not None else 3.0
            out += conn.read_until(_sentinel_seen, quiet=quiet, timeout=30)
        else:
            quiet = case.quiet if case.quiet is not None else 0.5
            out += conn.read_until(None, quiet=quiet, timeout=30)
        closed = conn.eof
    finally:
        conn.close()
    return Transcript(bytes(out), closed, time.monotonic() - t0)


def start_plain(binary: str, flags) -> tuple[harness.Server, tuple[str, int]]:
    srv = harness.start_server(binary, flags)
    return srv, srv.addr


def run_pair(case: Case, ref_bin: str, tgt_bin: str, start=start_plain):
    """Start both servers with the case's flags, run the case against both in
    parallel, stop both. `start(binary, flags)` returns the server and the
    address to send the case to (over TLS: a relay's). Returns
    (ref_transcript, tgt_transcript)."""
    results: dict[str, object] = {}

    def side(label, binary):
        srv = None
        try:
            srv, addr = start(binary, case.flags)
            results[label] = run_case(case, addr)
            if case.exits:
                # Shut down on purpose: it must be gone within a few seconds.
                deadline = time.time() + 5
                while srv.alive() and time.time() < deadline:
                    time.sleep(0.05)
                if srv.alive():
                    results[label + "_alive"] = srv.log()
            elif not srv.alive():
                results[label + "_dead"] = srv.log()
        except BaseException as e:  # reported by the caller
            results[label] = e
        finally:
            if srv is not None:
                srv.stop()

    threads = [threading.Thread(target=side, args=("ref", ref_bin)),
               threading.Thread(target=side, args=("tgt", tgt_bin))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


# --------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------

# Meta reply lines whose `t<secs>` / `l<secs>` flags (and `me` exp=/la=,
# and a normalized metadump line's exp-la=) may legitimately differ by one
# clock tick: each server's clock ticks once
# a second on its own, so a TTL read a few ms after it was set can be 30 in
# one process and 29 in the other. Only these numbers, only by 1, and -1
# ("no TTL") must match exactly.
_META_LINE = re.compile(rb"^(VA \d+|HD|EN|ME \S+|key=\S+)( |$)")
_TICK_TOKEN = re.compile(rb"^(t|l|exp=|la=|exp-la=)(-?\d+)$")


def _tick_equal(a: bytes, b: bytes) -> bool:
    if not (_META_LINE.match(a) and _META_LINE.match(b)):
        return False
    ta, tb = a.split(b" "), b.split(b" ")
    if len(ta) != len(tb):
        return False
    for x, y in zip(ta, tb):
        if x == y:
            continue
        mx, my = _TICK_TOKEN.match(x), _TICK_TOKEN.match(y)
        if not (mx and my and mx.group(1) == my.group(1)):
            return False
        vx, vy = int(mx.group(2)), int(my.group(2))
        if vx < 0 or vy < 0 or abs(vx - vy) > 1:
            return False
    return True


def compare(ref: bytes, tgt: bytes) -> tuple[bool, str]:
    """(equal, note). Byte equality, except meta TTL/age numbers that differ
    by one clock tick (note says where)."""
    if ref == tgt:
        return True, ""
    la, lb = ref.split(b"\n"), tgt.split(b"\n")
    if len(la) != len(lb):
        return False, ""
    notes = []
    for i, (a, b) in enumerate(zip(la, lb)):
        if a == b:
            continue
        if _tick_equal(a.rstrip(b"\r"), b.rstrip(b"\r")) and a.endswith(b"\r") == b.endswith(b"\r"):
            notes.append(f"line {i + 1}: {a!r} ~ {b!r} (one clock tick)")
            continue
        return False, ""
    return True, "; ".join(notes)


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------

def _lines(b: bytes) -> list[str]:
    out = []
    for ln in b.split(b"\n"):
        s = repr(ln)[2:-1]
        out.append(s if len(s) <= 200 else s[:200] + f"...(+{len(s) - 200} chars)")
    return out


def diff_report(case: Case, ref: bytes, tgt: bytes, limit: int = 80) -> str:
    d = list(difflib.unified_diff(_lines(ref), _lines(tgt), "memcached", "target",
                                  lineterm="", n=2))
    if len(d) > limit:
        d = d[:limit] + [f"... ({len(d) - limit} more diff lines)"]
    sent = case.payload
    sent_s = repr(sent[:600]) + (f" ...(+{len(sent) - 600} bytes)" if len(sent) > 600 else "")
    return (f"case {case.name} ({case.file}:{case.line}) flags={case.flags} "
            f"split={case.split} norms={case.norms}\n"
            f"sent: {sent_s}\n" + "\n".join(d))


if __name__ == "__main__":
    # Developer aid: print what memcached answers to corpus cases.
    #   python3 corpus.py [NAME-SUBSTRING ...]
    import sys
    wanted = sys.argv[1:]
    for c in load_all():
        if wanted and not any(w in c.name for w in wanted):
            continue
        srv = harness.start_server(harness.reference_binary(), c.flags)
        try:
            tr = run_case(c, srv.addr)
        finally:
            srv.stop()
        body = normalize(tr.shown(), c.norms)
        print(f"=== {c.name}  [{tr.seconds:.2f}s, {len(tr.data)} bytes]")
        for ln in _lines(body)[:60]:
            print("   ", ln)
