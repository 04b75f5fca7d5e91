"""Real client libraries against the target: pymemcache (pure Python),
pylibmc (libmemcached), python-memcached (pure Python), all on the text
protocol. Each adapter maps the library's own API and error conventions to
one shape so every test asserts the same real values for all three.
"""

from __future__ import annotations

import time

import pytest

pymemcache_base = pytest.importorskip("pymemcache.client.base")  # a skip fails the run (conftest)
pylibmc = pytest.importorskip("pylibmc")
memcache = pytest.importorskip("memcache")

NOT_FOUND = "NOT_FOUND"
EXISTS = "EXISTS"
CAS_FAILED = "CAS_FAILED"   # python-memcached cannot tell EXISTS from NOT_FOUND


class ForwardingAdapter:
    """The commands every library takes as memcached does, passed on as is;
    `_result` maps the library's answer where it needs mapping."""
    _result = staticmethod(lambda answer: answer)

    def delete(self, k):
        return self._result(self.c.delete(k))

    def add(self, k, v):
        return self._result(self.c.add(k, v))

    def replace(self, k, v):
        return self._result(self.c.replace(k, v))

    def append(self, k, v):
        return self._result(self.c.append(k, v))

    def prepend(self, k, v):
        return self._result(self.c.prepend(k, v))

    def touch(self, k, exp):
        return self._result(self.c.touch(k, exp))


class PymemcacheAdapter(ForwardingAdapter):
    name = "pymemcache"

    def __init__(self, host, port):
        self.c = pymemcache_base.Client((host, port), connect_timeout=5, timeout=5,
                                        default_noreply=False)

    def close(self):
        self.c.close()

    def set(self, k, v, exp=0):
        return self.c.set(k, v, expire=exp)

    def get(self, k):
        return self.c.get(k)

    def get_multi(self, keys):
        return self.c.get_many(keys)

    def gets(self, k):
        return self.c.gets(k)

    def cas(self, k, v, cas):
        r = self.c.cas(k, v, cas)
        return True if r else (NOT_FOUND if r is None else EXISTS)

    def incr(self, k, n):
        return self.c.incr(k, n)

    def decr(self, k, n):
        return self.c.decr(k, n)


class PylibmcAdapter(ForwardingAdapter):
    name = "pylibmc"

    def __init__(self, host, port):
        self.c = pylibmc.Client([f"{host}:{port}"], binary=False,
                                behaviors={"tcp_nodelay": True, "cas": True,
                                           "connect_timeout": 5000,
                                           "receive_timeout": 5_000_000,
                                           "send_timeout": 5_000_000})

    def close(self):
        self.c.disconnect_all()

    def set(self, k, v, exp=0):
        return self.c.set(k, v, time=exp)

    def get(self, k):
        return self.c.get(k)

    def get_multi(self, keys):
        return self.c.get_multi(keys)

    def gets(self, k):
        return self.c.gets(k)

    def cas(self, k, v, cas):
        try:
            return True if self.c.cas(k, v, cas) else EXISTS
        except pylibmc.NotFound:
            return NOT_FOUND

    def incr(self, k, n):
        try:
            return self.c.incr(k, n)
        except pylibmc.NotFound:
            return None

    def decr(self, k, n):
        try:
            return self.c.decr(k, n)
        except pylibmc.NotFound:
            return None


class PythonMemcachedAdapter(ForwardingAdapter):
    name = "python-memcached"

    def __init__(self, host, port):
        self.c = memcache.Client([f"{host}:{port}"], cache_cas=True, socket_timeout=5,
                                 dead_retry=0)

    def close(self):
        self.c.disconnect_all()

    def set(self, k, v, exp=0):
        return bool(self.c.set(k, v, time=exp))

    def get(self, k):
        return self.c.get(k)

    def get_multi(self, keys):
        return self.c.get_multi(keys)

    def gets(self, k):
        v = self.c.gets(k)
        return v, self.c.cas_ids.get(k.encode())

    def cas(self, k, v, cas):
        # The library sends the unique remembered by its last gets(); set it
        # to the one the test asks for. It maps every reply but STORED to
        # False, so EXISTS and NOT_FOUND look the same through it.
        self.c.cas_ids[k.encode()] = cas
        return True if self.c.cas(k, v) else CAS_FAILED

    def incr(self, k, n):
        return self.c.incr(k, n)

    def decr(self, k, n):
        return self.c.decr(k, n)

    # The library answers these with 0/False or a true value.
    _result = staticmethod(bool)


ADAPTERS = [PymemcacheAdapter, PylibmcAdapter, PythonMemcachedAdapter]


@pytest.fixture(params=ADAPTERS, ids=[a.name for a in ADAPTERS])
def mc(request, server):
    host, port, _ = server
    a = request.param(host, port)
    try:
        yield a
    finally:
        a.close()
    assert server.alive(), "server died during the client test"


BINARY_VALUES = [
    b"\r\n",
    b"a\r\nb",
    b"\r\nEND\r\n",
    b"VALUE x 0 1\r\nx\r\nEND\r\n",
    bytes(range(256)),
    b"\x00" * 10 + b"\r\n" + b"\xff" * 10,
]


def test_set_get_and_overwrite(mc):
    assert mc.set("k1", b"hello") is True
    assert mc.get("k1") == b"hello"
    assert mc.set("k1", b"world") is True
    assert mc.get("k1") == b"world"
    assert mc.get("missing") is None
    assert mc.set("empty", b"") is True
    assert mc.get("empty") == b""


@pytest.mark.parametrize("i", range(len(BINARY_VALUES)))
def test_binary_values_with_crlf(mc, i):
    v = BINARY_VALUES[i]
    assert mc.set(f"bin{i}", v) is True
    assert mc.get(f"bin{i}") == v
    got = mc.get_multi([f"bin{i}", "nope", f"bin{i}x"])
    assert got == {f"bin{i}": v}


def test_large_value(mc):
    v = bytes((i * 7 + 3) % 256 for i in range(500_000))
    assert mc.set("large", v) is True
    assert mc.get("large") == v


def test_multi_get_hundreds_of_keys(mc):
    keys = [f"multi:{i}" for i in range(600)]
    for i, k in enumerate(keys[:400]):
        assert mc.set(k, b"v%d\r\n" % i) is True
    got = mc.get_multi(keys)
    assert len(got) == 400
    for i, k in enumerate(keys[:400]):
        assert got[k] == b"v%d\r\n" % i
    for k in keys[400:]:
        assert k not in got


def test_gets_and_cas(mc):
    assert mc.set("c", b"one") is True
    v, cas = mc.gets("c")
    assert v == b"one" and cas is not None
    assert mc.cas("c", b"two", cas) is True
    assert mc.get("c") == b"two"
    assert mc.cas("c", b"three", cas) in (EXISTS, CAS_FAILED)   # stale unique
    assert mc.get("c") == b"two"
    v2, cas2 = mc.gets("c")
    assert v2 == b"two" and int(cas2) != int(cas)
    assert mc.cas("c", b"three", cas2) is True
    assert mc.get("c") == b"three"
    assert mc.cas("never-set", b"x", cas2) in (NOT_FOUND, CAS_FAILED)
    assert mc.get("never-set") is None


def test_incr_decr(mc):
    assert mc.set("n", b"10") is True
    assert mc.incr("n", 5) == 15
    assert mc.decr("n", 3) == 12
    assert mc.decr("n", 100) == 0              # floors at 0
    assert mc.set("big", b"18446744073709551614") is True
    assert mc.incr("big", 1) == 2**64 - 1
    assert mc.incr("big", 2) == 1              # wraps at 2^64
    assert mc.incr("missing-n", 1) is None
    assert mc.decr("missing-n", 1) is None
    assert mc.set("m", b"100") is True
    assert mc.decr("m", 1) == 99
    assert mc.get("m").rstrip(b" ") == b"99"   # memcached pads in place: b"99 "


def test_delete_add_replace(mc):
    assert mc.add("a", b"1") is True
    assert mc.add("a", b"2") is False
    assert mc.get("a") == b"1"
    assert mc.replace("a", b"3") is True
    assert mc.get("a") == b"3"
    assert mc.replace("nope", b"4") is False
    assert mc.get("nope") is None
    assert mc.delete("a") is True
    assert mc.get("a") is None
    assert mc.add("a", b"5") is True
    assert mc.get("a") == b"5"


def test_append_prepend(mc):
    assert mc.set("ap", b"mid") is True
    assert mc.append("ap", b">\r\n") is True
    assert mc.prepend("ap", b"\r\n<") is True
    assert mc.get("ap") == b"\r\n<mid>\r\n"
    assert mc.append("nope", b"x") is False
    assert mc.prepend("nope", b"x") is False
    assert mc.get("nope") is None


def test_expiry_and_touch(mc):
    # TTL 2 s: visible at once (the server clock ticks once a second, so a
    # 1 s TTL may already be over), gone after 3 s.
    assert mc.set("ttl", b"short", exp=2) is True
    assert mc.set("keep", b"long", exp=100) is True
    assert mc.set("touched", b"t") is True
    assert mc.touch("touched", 2) is True
    assert mc.touch("never-set", 10) is False
    assert mc.set("untouched", b"u", exp=2) is True
    assert mc.touch("untouched", 100) is True
    assert mc.get("ttl") == b"short"
    assert mc.get("touched") == b"t"
    time.sleep(3.2)
    assert mc.get("ttl") is None
    assert mc.get("touched") is None
    assert mc.get("keep") == b"long"
    assert mc.get("untouched") == b"u"


def test_values_interoperate_between_clients(server):
    """A value written by one library reads back identically through the
    others (all store raw bytes with flags 0)."""
    host, port, _ = server
    adapters = [a(host, port) for a in ADAPTERS]
    try:
        for i, writer in enumerate(adapters):
            v = b"from %s\r\n\x00\xff" % writer.name.encode()
            assert writer.set(f"x{i}", v) is True
            for reader in adapters:
                assert reader.get(f"x{i}") == v, (writer.name, reader.name)
    finally:
        for a in adapters:
            a.close()
