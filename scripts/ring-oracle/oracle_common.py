"""Shared helpers for the ring oracle scripts (our own test tooling).

Nothing here decides where a key goes: placements always come from the real
libmemcached or the real nutcracker. The hash functions below only help pick
*probe keys*, one landing in each arc of the continuum, so the fixtures test
every arc and not just the big ones.
"""

import bisect
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
FIXTURES = os.path.join(REPO, "Tests", "CacheProxyTests", "Fixtures")
KEYS_FILE = os.path.join(FIXTURES, "keys.txt")
DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


# ---------------------------------------------------------------- keys

def shared_keys(count=5000, seed=20240611):
    """Deterministic key mix: counters, real-looking keys, random printable
    ASCII, multi-byte UTF-8 (bytes >= 0x80 matter: libmemcached's
    one_at_a_time reads them as signed chars), and a few near the 250-byte
    memcached limit. No whitespace or control bytes: they are not keys."""
    rng = random.Random(seed)
    printable = [chr(c) for c in range(0x21, 0x7F)]
    alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    unicode_bits = ["é", "ß", "Ω", "ж", "漢字", "キー", "😀", "€", "ü", "ñ"]
    keys, seen = [], set()

    def add(k):
        if k not in seen and 0 < len(k.encode()) <= 250:
            seen.add(k)
            keys.append(k)

    for i in range(200):
        add(f"key:{i}")
    for i in range(100):
        add(str(i))
    while len(keys) < count:
        kind = rng.random()
        if kind < 0.35:
            add(f"user:{rng.randrange(10**7)}:{rng.choice(['profile', 'session', 'cart', 'feed'])}")
        elif kind < 0.70:
            add("".join(rng.choice(alnum) for _ in range(rng.randint(1, 40))))
        elif kind < 0.90:
            add("".join(rng.choice(printable) for _ in range(rng.randint(1, 30))))
        elif kind < 0.995:
            add("".join(rng.choice(unicode_bits + list(alnum)) for _ in range(rng.randint(1, 12))))
        else:
            add("".join(rng.choice(alnum) for _ in range(rng.randint(200, 250))))
    return keys


def write_shared_keys(keys):
    os.makedirs(FIXTURES, exist_ok=True)
    with open(KEYS_FILE, "w", encoding="utf-8") as f:
        for k in keys:
            f.write(k + "\n")


def load_shared_keys():
    with open(KEYS_FILE, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


# ------------------------------------------------- key hashes, probe search

def md5_hash(data: bytes) -> int:
    return int.from_bytes(hashlib.md5(data).digest()[:4], "little")


def one_at_a_time_hash(data: bytes) -> int:
    value = 0
    for byte in data:
        c = byte - 256 if byte >= 128 else byte  # C `char` is signed on x86-64
        value = (value + c) & 0xFFFFFFFF
        value = (value + (value << 10)) & 0xFFFFFFFF
        value ^= value >> 6
    value = (value + (value << 3)) & 0xFFFFFFFF
    value ^= value >> 11
    value = (value + (value << 15)) & 0xFFFFFFFF
    return value


def probe_keys(continuum_values, key_hash, prefix, budget=400_000):
    """One key per arc (prev point, point] of a sorted continuum, where found
    within `budget` candidates. Returns (keys, arcs covered, arcs total)."""
    points = sorted(set(continuum_values))
    if not points:
        return [], 0, 0
    found = {}
    for i in range(budget):
        key = f"{prefix}{i}"
        slot = bisect.bisect_left(points, key_hash(key.encode()))
        slot %= len(points)  # past the last point: the wrap-around arc of point 0
        if slot not in found:
            found[slot] = key
            if len(found) == len(points):
                break
    return [found[s] for s in sorted(found)], len(found), len(points)


# ------------------------------------------------------------ fixtures

def owners_string(indices):
    return "".join(DIGITS[i] for i in indices)


def write_fixture(name, body):
    os.makedirs(FIXTURES, exist_ok=True)
    path = os.path.join(FIXTURES, name + ".json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(body, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {os.path.relpath(path, REPO)} ({os.path.getsize(path)} bytes)")


# ------------------------------------------------------ local processes

class Processes:
    """Starts servers on loopback and kills exactly those, by PID."""

    def __init__(self):
        self.procs = []

    def start(self, argv, **kw):
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, **kw)
        self.procs.append(proc)
        return proc

    def stop_all(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop_all()


def assert_loopback(addr):
    if not addr.startswith("127."):
        raise SystemExit(f"refusing non-loopback address {addr}")


def port_is_free(addr, port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((addr, port))
            return True
        except OSError:
            return False


def free_ports(addr, count, start=31200):
    ports, port = [], start
    while len(ports) < count:
        if port != 11211 and port_is_free(addr, port):
            ports.append(port)
        port += 1
    return ports


def wait_listening(addr, port, proc, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            with socket.create_connection((addr, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {addr}:{port}")


def start_memcached(procs, addr, port):
    assert_loopback(addr)
    argv = ["memcached", "-l", addr, "-p", str(port), "-U", "0", "-m", "64", "-t", "1"]
    if os.geteuid() == 0:
        argv += ["-u", "nobody"]  # memcached refuses to run as root without -u
    proc = procs.start(argv)
    wait_listening(addr, port, proc)
    return proc


# ---------------------------------------------- a minimal text client

class TextClient:
    """Just enough memcached text protocol to set keys and ask who holds them."""

    def __init__(self, addr, port):
        assert_loopback(addr)
        self.sock = socket.create_connection((addr, port), timeout=10)
        self.buf = b""

    def close(self):
        self.sock.close()

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def set_many(self, keys, batch=200):
        for i in range(0, len(keys), batch):
            part = keys[i:i + batch]
            self.sock.sendall(b"".join(b"set %s 0 0 1\r\nx\r\n" % k for k in part))
            for k in part:
                reply = self._line()
                if reply != b"STORED":
                    raise RuntimeError(f"set {k!r}: {reply!r}")

    def present(self, keys, batch=100):
        """Which of `keys` this server holds (multi-key get)."""
        held = set()
        for i in range(0, len(keys), batch):
            self.sock.sendall(b"get " + b" ".join(keys[i:i + batch]) + b"\r\n")
            while True:
                line = self._line()
                if line == b"END":
                    break
                _, key, _flags, size = line.split(b" ")[:4]
                self._exact(int(size) + 2)
                held.add(key)
        return held


def observe_owners(servers, keys):
    """For each key, the index of the one server in `servers` that holds it."""
    owner = {}
    for index, (addr, port) in enumerate(servers):
        client = TextClient(addr, port)
        try:
            for key in client.present(keys):
                if key in owner:
                    raise RuntimeError(f"{key!r} found on two servers")
                owner[key] = index
        finally:
            client.close()
    missing = [k for k in keys if k not in owner]
    if missing:
        raise RuntimeError(f"{len(missing)} keys on no server, e.g. {missing[:3]!r}")
    return [owner[k] for k in keys]
