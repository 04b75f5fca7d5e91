"""memcached's ASCII authentication (`-Y <file>`) on the node, compared byte
for byte with Debian's memcached 1.6.18 started with the same file.

Before the login a connection is read the way memcached reads it: a line is
refused (`CLIENT_ERROR unauthenticated`) unless it is `set` with a size as
its fifth word; the data block must end in `\\r\\n` (`bad command line
termination`) and hold at least two words (`bad authentication token
format`); a user and password not in the file get `authentication failure`,
good ones `STORED`; the connection stays open through all of these. More
than 2048 bytes without a newline, or a block larger than memcached's 16 KB
read buffer, close it. memcached keeps a single reply before the login,
each taking the place of the one before, and writes it when its read runs
dry or its `-R` turn ends: pipelined requests (one write) are compared as
well as requests sent one write at a time.

The file is read as memcached 1.6.18 reads it (at most 8 entries, lines of
255 bytes, a lone last line without a newline losing its last byte, an empty
line refused), and read again on SIGHUP.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

import harness

USERS = b"alice:secret1\nbob:hunter2\ncarol:with:colons and spaces\n"

# How long a connection stays quiet before a write is taken as answered.
QUIET = 0.3


@pytest.fixture(scope="module")
def auth_dir():
    # memcached opens the file after dropping to -u nobody: a directory anyone can enter
    d = tempfile.mkdtemp(prefix="mcauth-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def write_file(directory: str, name: str, content: bytes) -> str:
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(content)
    os.chmod(path, 0o644)
    return path


def start(binary: str, auth_file: str, *extra: str) -> harness.Server:
    port = harness.free_port()
    argv = [binary, "-l", harness.HOST, "-p", str(port), "-U", "0", *harness._user_flags(), "-Y", auth_file, *extra]
    return harness.spawn_listening(argv, port, prefix="mcauth-")


@pytest.fixture(scope="module")
def servers(auth_dir, reference_bin, target_bin):
    """memcached and the node, each with the same file."""
    path = write_file(auth_dir, "users", USERS)
    started = {"memcached": start(reference_bin, path), "node": start(target_bin, path)}
    yield started
    for srv in started.values():
        srv.stop()


def exchange(addr, writes: list[bytes]) -> list[bytes]:
    """Sends each write on one connection, waiting for the answer to go quiet
    before the next; what came back after each, `<closed>` once the server
    closed (a reset counts as a close: a server that closes with input
    unread makes the kernel reset, by timing)."""
    answers = []
    with socket.create_connection(addr, timeout=5) as s:
        for data in writes:
            try:
                s.sendall(data)
            except OSError:
                answers.append(b"<closed>")
                break
            got, closed = b"", False
            s.settimeout(QUIET)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                except ConnectionResetError:
                    closed = True
                    break
                if not chunk:
                    closed = True
                    break
                got += chunk
            answers.append(got + (b"<closed>" if closed else b""))
            if closed:
                break
    # the node says which build it is (README, "Deliberate differences")
    return [a.replace(b"VERSION 1.6.18-memcluster", b"VERSION 1.6.18") for a in answers]


def login_answer(addr, credentials: bytes) -> bytes:
    """The one-line answer to a login on a new connection."""
    with socket.create_connection(addr, timeout=5) as s:
        s.sendall(login_block(credentials))
        got = b""
        while not got.endswith(b"\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                return got + b"<closed>"
            got += chunk
        return got


def login_block(data: bytes, size: int | None = None, line_tail: bytes = b"") -> bytes:
    return b"set x 0 0 %d%s\r\n%s\r\n" % (len(data) if size is None else size, line_tail, data)


# Each case: the writes, one after another on one connection.
CASES = {
    # refused before the login, connection kept
    "get_first": [b"get k\r\n", b"version\r\n"],
    "meta_first": [b"mg k v\r\n", b"mn\r\n"],
    "stats_first": [b"stats\r\n", b"version\r\n"],
    "unknown_first": [b"foo bar\r\n", b"version\r\n"],
    "add_with_good_credentials": [b"add x 0 0 13\r\nalice secret1\r\n", b"version\r\n"],
    "quit_first": [b"quit\r\n", b"version\r\n"],
    "empty_line": [b"\r\n", b"version\r\n"],
    "one_byte_waits": [b"\n", b"version\r\n"],
    "binary_first_byte": [b"\x80\x01\x00\x00\r\n", b"version\r\n"],
    "tab_separated_set": [b"set\tx 0 0 13\r\nalice secret1\r\n", b"version\r\n"],
    "set_with_four_words": [b"set x 0 13\r\nalice secret1\r\n", b"version\r\n"],
    "set_negative_size": [b"set x 0 0 -1\r\nalice secret1\r\n", b"version\r\n"],
    "set_size_with_junk": [b"set x 0 0 13abc\r\nalice secret1\r\n", b"version\r\n"],
    "set_size_out_of_range": [b"set x 0 0 99999999999999999999999\r\n", b"version\r\n"],
    "nul_in_the_word_set": [b"se\x00t x 0 0 13\r\n", b"version\r\n"],
    "half_a_line_then_the_rest": [b"get k", b"\r\n", b"version\r\n"],
    # the data block
    "wrong_password": [login_block(b"alice secret"), b"version\r\n"],
    "unknown_user": [login_block(b"mallory pass1"), b"version\r\n"],
    "one_word": [login_block(b"alice"), b"version\r\n"],
    "leading_space_one_word": [login_block(b" secret1"), b"version\r\n"],
    "size_zero": [b"set x 0 0 -0\r\n\r\n", b"version\r\n"],
    "block_not_ending_in_crlf": [b"set x 0 0 13\r\nalice secret1XY", b"version\r\n"],
    "block_ending_in_lf": [b"set x 0 0 13\r\nalice secret1\n", b"\r\nversion\r\n"],
    "block_ending_in_cr_cr": [b"set x 0 0 13\r\nalice secret1\r\r", b"version\r\n"],
    "password_with_spaces_never_matches": [login_block(b"carol with:colons and spaces"), b"version\r\n"],
    "first_word_of_a_password_with_spaces": [login_block(b"carol with:colons"), b"version\r\n"],
    "block_of_16382_bytes": [b"set x 0 0 16382\r\n", b"a" * 16382 + b"\r\n", b"version\r\n"],
    # closed
    "block_of_16383_bytes": [b"set x 0 0 16383\r\n", b"a" * 16383 + b"\r\n", b"version\r\n"],
    "block_of_100000_bytes": [b"set x 0 0 100000\r\n", b"a" * 100000 + b"\r\n", b"version\r\n"],
    "2048_bytes_without_newline": [b"g" * 2048, b"version\r\n"],
    "2049_bytes_without_newline": [b"g" * 2049, b"version\r\n"],
    "2047_bytes_then_newline": [b"g" * 2047, b"\n", b"version\r\n"],
    "long_line_with_newline": [b"x" * 5000 + b"\r\n", b"version\r\n"],
    # logged in
    "good": [login_block(b"alice secret1"), b"set k 0 0 2\r\nhi\r\n", b"get k x\r\n"],
    "good_noreply_still_answers": [login_block(b"bob hunter2", line_tail=b" noreply"), b"get k\r\n"],
    "extra_words_ignored": [login_block(b"alice secret1 zzz"), b"version\r\n"],
    "double_space": [login_block(b"alice  secret1"), b"version\r\n"],
    "leading_space": [login_block(b" alice secret1"), b"version\r\n"],
    "nul_ends_the_password": [login_block(b"alice secret1\x00z"), b"version\r\n"],
    "nul_in_the_set_line": [b"set x 0 0 13\x00zz\r\nalice secret1\r\n", b"version\r\n"],
    "set_words_ignored": [b"set " + b"k" * 300 + b" abc -5 13 noreply junk\r\nalice secret1\r\n", b"version\r\n"],
    "size_with_plus_and_tab": [b"set x 0 0 +13\t\r\nalice secret1\r\n", b"version\r\n"],
    "bare_newline_set_line": [b"set x 0 0 13\nalice secret1\r\n", b"version\r\n"],
    "block_in_two_writes": [b"set x 0 0 13\r\nali", b"ce secret1\r\n", b"version\r\n"],
    "set_line_then_block_and_request": [b"set x 0 0 13\r\n", b"alice secret1\r\nversion\r\n"],
    "meta_after_login": [login_block(b"bob hunter2"), b"ms m 1\r\nz\r\nmg m v\r\nmn\r\n"],
    "twice": [login_block(b"alice secret1"), login_block(b"alice secret9"), b"get x\r\n"],
    "good_after_a_failure": [login_block(b"alice secret"), login_block(b"alice secret1"), b"version\r\n"],
    # pipelined: one reply kept before the login, written when the read runs dry or the -R turn ends
    "three_refused_in_one_write": [b"get a\r\nget b\r\nversion\r\n", b"version\r\n"],
    "refused_then_failure_in_one_write": [b"get k\r\n" + login_block(b"alice secret"), b"version\r\n"],
    "failure_then_refused_in_one_write": [login_block(b"alice secret") + b"get k\r\n", b"version\r\n"],
    "refused_then_login_in_one_write": [b"get k\r\n" + login_block(b"alice secret1") + b"version\r\n"],
    "failure_then_login_in_one_write": [login_block(b"alice secret") + login_block(b"alice secret1"), b"version\r\n"],
    "login_and_requests_in_one_write": [login_block(b"alice secret1") + b"set k 0 0 1\r\nv\r\nget k\r\n"],
    **{f"{n}_refused_in_one_write": [b"get a\r\n" * n] for n in (20, 21, 22, 41, 42, 62)},
    "50_refused_then_failure_in_one_write": [b"get a\r\n" * 50 + login_block(b"alice secret"), b"version\r\n"],
}


def test_same_answers_as_memcached(servers):
    """Every case on its own connection, against both servers at once."""
    def run(item):
        (name, writes), which = item
        return name, which, exchange(servers[which].addr, writes)

    answers: dict[str, dict[str, list[bytes]]] = {name: {} for name in CASES}
    jobs = [(case, which) for case in CASES.items() for which in servers]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        for name, which, got in pool.map(run, jobs):
            answers[name][which] = got
    differ = {name: a for name, a in answers.items() if a["node"] != a["memcached"]}
    assert not differ, "\n".join(f"{name}:\n  memcached {a['memcached']!r}\n  node      {a['node']!r}"
                                 for name, a in differ.items())
    assert all(srv.alive() for srv in servers.values())
    # a few that must not pass unnoticed if both servers changed together
    assert answers["wrong_password"]["node"][0] == b"CLIENT_ERROR authentication failure\r\n"
    assert answers["good"]["node"][2] == b"VALUE k 0 2\r\nhi\r\nEND\r\n"
    assert answers["2049_bytes_without_newline"]["node"] == [b"<closed>"]
    assert answers["block_of_16383_bytes"]["node"][-1] == b"<closed>"
    assert answers["42_refused_in_one_write"]["node"] == [b"CLIENT_ERROR unauthenticated\r\n" * 3]


def test_counters_and_settings(auth_dir, target_bin, reference_bin):
    """auth_cmds counts user and password checks, auth_errors the failed
    ones; refusals before a check count in neither."""
    path = write_file(auth_dir, "counted", USERS)
    seen = {}
    for name, binary in (("memcached", reference_bin), ("node", target_bin)):
        srv = start(binary, path)
        try:
            login_answer(srv.addr, b"alice secret")
            login_answer(srv.addr, b"alice")
            exchange(srv.addr, [b"get k\r\n", b"set x 0 0 13\r\nalice secret1XY"])
            out = b"".join(exchange(srv.addr, [login_block(b"alice secret1"), b"stats\r\n", b"stats settings\r\n"]))
            lines = dict(l.split(b" ", 2)[1:] for l in out.split(b"\r\n") if l.startswith(b"STAT "))
            seen[name] = {k: lines[k] for k in (b"auth_cmds", b"auth_errors", b"auth_enabled_ascii", b"auth_enabled_sasl")}
        finally:
            srv.stop()
    assert seen["node"] == seen["memcached"], seen
    assert seen["node"][b"auth_cmds"] == b"2" and seen["node"][b"auth_errors"] == b"1"


CREDENTIALS = [b"alice secret1", b"bob hunter2", b"alice secret", b"u0 p0", b"u8 p8", b"alice " + b"s" * 248]

FILES = {
    "one_line": b"alice:secret1\n",
    "one_line_without_newline": b"alice:secret1",          # memcached loses the last byte
    "two_lines_last_without_newline": b"bob:hunter2\nalice:secret1",
    "crlf_lines": b"bob:hunter2\r\nalice:secret1\r\n",
    "cr_then_junk": b"bob:hunter2\rjunk\nalice:secret1\n",
    "nul_in_a_password": b"bob:hun\x00ter2\nalice:secret1\n",
    "empty_user": b":secret1\nalice:secret1\n",
    "a_line_of_255_bytes": b"alice:" + b"s" * 249 + b"\nbob:hunter2\n",
    "a_line_of_254_bytes": b"alice:" + b"s" * 248 + b"\nbob:hunter2\n",
    "a_line_over_255_bytes": b"bob:" + b"h" * 300 + b"\nalice:secret1\n",
    "eight_entries": b"".join(b"u%d:p%d\n" % (i, i) for i in range(7)) + b"alice:secret1\n",
    "ten_entries": b"".join(b"u%d:p%d\n" % (i, i) for i in range(9)) + b"alice:secret1\n",
    "empty_file": b"",
    # refused at start
    "an_empty_line": b"bob:hunter2\n\nalice:secret1\n",
    "a_single_crlf_line": b"alice:secret1\r\n",
    "no_colon": b"alice:secret1\nno-colon-here\n",
}


def outcome_with_file(binary: str, path: str):
    """The start-up refusal's last line, or the answer to each credential."""
    port = harness.free_port()
    argv = [binary, "-l", harness.HOST, "-p", str(port), "-U", "0", *harness._user_flags(), "-Y", path]
    try:
        srv = harness.spawn_listening(argv, port, prefix="mcauth-file-")
    except Exception:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return ("refused", r.returncode != 0, r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "")
    try:
        return [login_answer(srv.addr, c) for c in CREDENTIALS]
    finally:
        srv.stop()


@pytest.mark.parametrize("name", FILES)
def test_files_read_as_memcached_reads_them(name, auth_dir, reference_bin, target_bin):
    path = write_file(auth_dir, "file-" + name, FILES[name])
    seen = {which: outcome_with_file(binary, path)
            for which, binary in (("memcached", reference_bin), ("node", target_bin))}
    if isinstance(seen["memcached"], tuple):
        assert isinstance(seen["node"], tuple) and seen["node"][1], seen
        assert seen["memcached"][2] in seen["node"][2], seen
    else:
        assert seen["node"] == seen["memcached"], seen


def test_missing_file_refused_as_memcached_does(auth_dir, reference_bin, target_bin):
    path = os.path.join(auth_dir, "absent")
    seen = {which: outcome_with_file(binary, path)
            for which, binary in (("memcached", reference_bin), ("node", target_bin))}
    assert seen["memcached"][0] == "refused" and seen["node"][0] == "refused", seen
    assert seen["memcached"][2] in seen["node"][2], seen


def test_udp_refused_with_an_auth_file(auth_dir, reference_bin, target_bin):
    path = write_file(auth_dir, "udp", USERS)
    lines = {}
    for which, binary in (("memcached", reference_bin), ("node", target_bin)):
        r = subprocess.run([binary, "-l", harness.HOST, "-p", "0", "-U", str(harness.free_port()),
                            *harness._user_flags(), "-Y", path], capture_output=True, text=True, timeout=10)
        assert r.returncode != 0
        lines[which] = r.stderr.strip().splitlines()[-1]
    assert lines["node"] == lines["memcached"] == "Cannot use UDP with ascii authentication enabled (-U 0 to disable)"


def answer_within(addr, credentials: bytes, expected: bytes, seconds: float = 5.0) -> bytes:
    """memcached reads the file on its next clock tick after SIGHUP: ask until
    the expected answer comes or time is up."""
    deadline = time.monotonic() + seconds
    while True:
        got = login_answer(addr, credentials)
        if got == expected or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


STORED, FAILURE = b"STORED\r\n", b"CLIENT_ERROR authentication failure\r\n"


@pytest.mark.parametrize("which", ["memcached", "node"])
def test_sighup_reads_the_file_again(which, auth_dir, reference_bin, target_bin):
    path = write_file(auth_dir, "reloaded-" + which, b"alice:secret1\nbob:hunter2\n")
    srv = start(reference_bin if which == "memcached" else target_bin, path)
    try:
        logged_in = socket.create_connection(srv.addr, timeout=5)
        assert login_answer(srv.addr, b"alice secret1") == STORED
        logged_in.sendall(login_block(b"alice secret1"))
        assert logged_in.recv(100) == STORED
        write_file(auth_dir, "reloaded-" + which, b"bob:hunter2\ndave:newpass\n")
        os.kill(srv.pid, signal.SIGHUP)
        assert answer_within(srv.addr, b"dave newpass", STORED) == STORED
        assert answer_within(srv.addr, b"alice secret1", FAILURE) == FAILURE
        # a connection logged in before stays logged in
        logged_in.sendall(b"version\r\n")
        assert logged_in.recv(100).startswith(b"VERSION ")
        logged_in.close()
        # a file that cannot be read keeps the entries in force
        write_file(auth_dir, "reloaded-" + which, b"bob:hunter2\n\nerin:x\n")
        os.kill(srv.pid, signal.SIGHUP)
        time.sleep(1.5)
        assert login_answer(srv.addr, b"dave newpass") == STORED
        assert login_answer(srv.addr, b"erin x") == FAILURE
        assert srv.alive()
    finally:
        srv.stop()


def test_a_node_without_an_auth_file_survives_sighup(server_factory):
    srv = server_factory()
    os.kill(srv.pid, signal.SIGHUP)
    time.sleep(0.3)
    assert srv.alive()
    assert exchange(srv.addr, [b"version\r\n"])[0].startswith(b"VERSION ")


def test_a_refused_login_is_logged_without_the_password(auth_dir, target_bin, reference_bin):
    if target_bin == reference_bin:
        pytest.skip("memcached logs nothing of a refused login")
    path = write_file(auth_dir, "logged", USERS)
    srv = start(target_bin, path)
    try:
        for attempt in range(30):
            assert login_answer(srv.addr, b"alice wrong-%d" % attempt) == FAILURE
        assert login_answer(srv.addr, b"\x1b[2Jevil wrong-x") == FAILURE
        time.sleep(1.1)
        assert login_answer(srv.addr, b"alice wrong-last") == FAILURE
        deadline = time.monotonic() + 3
        while "more since the last line" not in srv.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        log = srv.log()
        assert "-Y: login refused (user alice, wrong user or password)" in log, log
        # at most a line a second, the rest counted; the password never written,
        # a user's control bytes never written as they are
        assert log.count("login refused") <= 3, log
        assert "more since the last line" in log, log
        assert "wrong-" not in log and "\x1b" not in log, log
    finally:
        srv.stop()


def test_failed_logins_leave_connections_and_rss_flat(auth_dir, target_bin):
    """2,000 refused logins (wrong password, unknown user, garbage), each on
    its own connection, then the connection dropped: nothing stays behind."""
    path = write_file(auth_dir, "flat", USERS)
    srv = start(target_bin, path)
    try:
        with harness.TextClient(srv.addr) as watcher:
            assert login_answer(srv.addr, b"alice secret1") == STORED
            assert watcher.conn.request(login_block(b"alice secret1")) == STORED

            def stat(name: str) -> int:
                # Bounded: the reply is read up to END, the server closing, or 5 s;
                # anything short of a whole stats block fails the test.
                return int(watcher.stats()[name])

            before, rss = stat("curr_connections"), srv.rss_kib()
            attempts = [login_block(b"alice wrong"), login_block(b"mallory x"), b"get k\r\n" * 30,
                        b"set x 0 0 5000\r\n" + b"z" * 3000]
            for i in range(2000):
                with socket.create_connection(srv.addr, timeout=5) as s:
                    s.sendall(attempts[i % len(attempts)])
            deadline = time.monotonic() + 5
            while stat("curr_connections") > before and time.monotonic() < deadline:
                time.sleep(0.05)
            assert stat("curr_connections") <= before
            assert stat("auth_errors") >= 1000
            assert srv.rss_kib() - rss < 20_000, f"RSS grew {srv.rss_kib() - rss} KiB over 2,000 refused logins"
            assert srv.alive()
    finally:
        srv.stop()
