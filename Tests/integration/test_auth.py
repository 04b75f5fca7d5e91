"""memcached's ASCII authentication (`-Y <file>`) on the node, compared byte
for byte with Debian's memcached 1.6.18 started with the same file: every
request before a `set` with good credentials is refused with `CLIENT_ERROR
unauthenticated` and the connection closes; good credentials answer
`STORED` (noreply or not) and the connection is served as usual; the
`auth_cmds`/`auth_errors` counters and `auth_enabled_ascii`; the start-up
refusals for a missing file and a malformed entry.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time

import pytest

import harness

USERS = "alice:secret1\nbob:hunter2\ncarol:with:colons and spaces\n"


@pytest.fixture(scope="module")
def auth_file():
    d = tempfile.mkdtemp(prefix="mcauth-")
    os.chmod(d, 0o755)
    path = os.path.join(d, "users")
    with open(path, "w") as f:
        f.write(USERS)
    os.chmod(path, 0o644)
    yield path
    os.unlink(path)
    os.rmdir(d)


def start(binary: str, auth_file: str) -> harness.Server:
    port = harness.free_port()
    argv = [binary, "-l", harness.HOST, "-p", str(port), "-U", "0", *harness._user_flags(), "-Y", auth_file]
    return harness.spawn_listening(argv, port, prefix="mcauth-")


def transcript(addr, data: bytes) -> bytes:
    """Everything the server answers to `data`, until it closes or goes quiet."""
    conn = harness.RawConn(addr, timeout=5)
    try:
        conn.send(data)
        return conn.read_until_quiet(0.3) if hasattr(conn, "read_until_quiet") else _drain(conn)
    finally:
        conn.close()


def _drain(conn) -> bytes:
    deadline = time.monotonic() + 3
    quiet_since = time.monotonic()
    seen = 0
    while time.monotonic() < deadline:
        conn._drain_nonblocking()
        if len(conn.buf) != seen:
            seen, quiet_since = len(conn.buf), time.monotonic()
        if conn.eof or time.monotonic() - quiet_since > 0.3:
            break
        time.sleep(0.01)
    return bytes(conn.buf) + (b"<closed>" if conn.eof else b"")


CASES = {
    "get_first": b"get k\r\n",
    "version_first": b"version\r\n",
    "meta_first": b"mg k v\r\nmn\r\n",
    "stats_first": b"stats\r\n",
    "unknown_first": b"foo bar\r\n",
    "wrong_password": b"set x 0 0 12\r\nalice secret\r\nget k\r\n",
    "unknown_user": b"set x 0 0 13\r\nmallory pass1\r\nversion\r\n",
    "no_space": b"set x 0 0 5\r\nalice\r\nversion\r\n",
    "add_with_good_credentials": b"add x 0 0 13\r\nalice secret1\r\nversion\r\n",
    "good": b"set x 0 0 13\r\nalice secret1\r\nset k 0 0 2\r\nhi\r\nget k x\r\nversion\r\n",
    "good_noreply": b"set x 0 0 11 noreply\r\nbob hunter2\r\nget k\r\n",
    "password_with_colons": b"set x 0 0 26\r\ncarol with:colons and spaces\r\nversion\r\n",
    "good_then_meta": b"set a 0 0 11\r\nbob hunter2\r\nms m 1\r\nz\r\nmg m v\r\nmn\r\n",
    "huge_value": b"set x 0 0 100000\r\n" + b"a" * 100000 + b"\r\nversion\r\n",
    "bad_data_chunk": b"set x 0 0 3\r\nalice secret1\r\nversion\r\n",
    "twice": b"set x 0 0 13\r\nalice secret1\r\nset x 0 0 13\r\nalice secret9\r\nget x\r\n",
}


# memcached 1.6.18 answers these two in ways its source does not explain
# (a data block without a space: `bad authentication token format` when it
# is alone in the read, `unauthenticated` when a request follows it; a
# 100,000-byte block: the connection is closed). The node answers `bad
# authentication token format` to both. Strict: a fix shows up.
NOT_MATCHED = {
    "no_space": "memcached: unauthenticated when a request follows in the same read",
    "huge_value": "memcached closes the connection on a 100,000-byte authentication block",
}


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=NOT_MATCHED[c]))
                                  if c in NOT_MATCHED else c for c in CASES])
def test_same_answers_as_memcached(case, auth_file, reference_bin, target_bin):
    answers = {}
    for name, binary in (("memcached", reference_bin), ("node", target_bin)):
        srv = start(binary, auth_file)
        try:
            answers[name] = transcript(srv.addr, CASES[case])
            assert srv.alive()
        finally:
            srv.stop()
    # the node says which build it is (README, "Deliberate differences")
    answers["node"] = answers["node"].replace(b"VERSION 1.6.18-memcluster", b"VERSION 1.6.18")
    assert answers["node"] == answers["memcached"], answers


def test_counters_and_settings(auth_file, target_bin, reference_bin):
    seen = {}
    for name, binary in (("memcached", reference_bin), ("node", target_bin)):
        srv = start(binary, auth_file)
        try:
            transcript(srv.addr, b"set x 0 0 12\r\nalice secret\r\n")
            transcript(srv.addr, b"get k\r\n")
            out = transcript(srv.addr, b"set x 0 0 13\r\nalice secret1\r\nstats\r\nstats settings\r\n")
            lines = dict(l.split(b" ", 2)[1:] for l in out.split(b"\r\n") if l.startswith(b"STAT "))
            seen[name] = {k: lines[k] for k in (b"auth_cmds", b"auth_errors", b"auth_enabled_ascii", b"auth_enabled_sasl")}
        finally:
            srv.stop()
    assert seen["node"] == seen["memcached"], seen
    assert seen["node"][b"auth_cmds"] == b"2" and seen["node"][b"auth_errors"] == b"1"


@pytest.mark.parametrize("content", [None, "alice:secret1\nno-colon-here\n"])
def test_start_up_refusals_match_memcached(content, reference_bin, target_bin):
    # memcached opens the file after dropping to -u nobody: a directory anyone can enter
    d = tempfile.mkdtemp(prefix="mcauth-refusal-")
    os.chmod(d, 0o755)
    path = os.path.join(d, "users")
    if content is not None:
        with open(path, "w") as f:
            f.write(content)
        os.chmod(path, 0o644)
    results = {}
    for name, binary in (("memcached", reference_bin), ("node", target_bin)):
        r = subprocess.run([binary, "-p", "0", "-U", "0", *harness._user_flags(), "-Y", path],
                           capture_output=True, text=True, timeout=10)
        results[name] = (r.returncode != 0, r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "")
    if content is not None:
        os.unlink(path)
    os.rmdir(d)
    assert results["node"][0] and results["memcached"][0], results
    assert results["memcached"][1] in results["node"][1], results
