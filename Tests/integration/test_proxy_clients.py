"""Real client libraries, unchanged but for the address: pointed at the
proxy (3 nodes, replicas 2) as at one memcached.

pymemcache, pylibmc (plain distribution, one server: the proxy) and
python-memcached go through the adapters of test_clients.py; Django's
PyMemcacheCache is configured through Django settings in this process.
Each assertion checks a real value. The three libraries also run through a
membership change (a node added under their load).
"""

from __future__ import annotations

import time

import pytest

import proxy_harness as ph
from test_clients import ADAPTERS, CAS_FAILED, EXISTS, NOT_FOUND

django = pytest.importorskip("django")  # a skip fails the run (conftest)


@pytest.fixture(params=ADAPTERS, ids=[a.name for a in ADAPTERS])
def lib(request, cluster):
    host, port = cluster.addr
    a = request.param(host, port)
    try:
        yield a
    finally:
        a.close()
    assert cluster.proxy.alive(), "proxy died during the client test:\n" + cluster.describe()


def test_library_api_through_proxy(lib, cluster):
    p = f"{lib.name}:"
    # set / get / overwrite / empty / binary
    assert lib.set(p + "k1", b"hello") is True
    assert lib.get(p + "k1") == b"hello"
    assert lib.set(p + "k1", b"world") is True
    assert lib.get(p + "k1") == b"world"
    assert lib.get(p + "missing") is None
    assert lib.set(p + "empty", b"") is True
    assert lib.get(p + "empty") == b""
    binv = b"VALUE x 0 1\r\nx\r\nEND\r\n" + bytes(range(256))
    assert lib.set(p + "bin", binv) is True
    assert lib.get(p + "bin") == binv
    big = bytes((i * 7 + 3) % 256 for i in range(500_000))
    assert lib.set(p + "big", big) is True
    assert lib.get(p + "big") == big

    # get_many of hundreds of keys (spread over the 3 nodes), some missing
    keys = [f"{p}multi:{i}" for i in range(600)]
    for i, k in enumerate(keys[:450]):
        assert lib.set(k, b"v%d\r\n" % i) is True
    got = lib.get_multi(keys)
    assert len(got) == 450, f"get_many returned {len(got)} of 450 stored keys"
    for i, k in enumerate(keys[:450]):
        assert got[k] == b"v%d\r\n" % i, k
    assert not any(k in got for k in keys[450:])

    # gets + cas: the unique is the one the client saw
    assert lib.set(p + "c", b"one") is True
    v, cas = lib.gets(p + "c")
    assert v == b"one" and cas is not None
    assert lib.cas(p + "c", b"two", cas) is True
    assert lib.get(p + "c") == b"two"
    assert lib.cas(p + "c", b"three", cas) in (EXISTS, CAS_FAILED)
    assert lib.get(p + "c") == b"two"
    v2, cas2 = lib.gets(p + "c")
    assert v2 == b"two" and int(cas2) != int(cas)
    assert lib.cas(p + "c", b"three", cas2) is True
    assert lib.get(p + "c") == b"three"
    assert lib.cas(p + "never-set", b"x", cas2) in (NOT_FOUND, CAS_FAILED)
    assert lib.get(p + "never-set") is None

    # incr / decr
    assert lib.set(p + "n", b"10") is True
    assert lib.incr(p + "n", 5) == 15
    assert lib.decr(p + "n", 3) == 12
    assert lib.decr(p + "n", 100) == 0
    assert lib.set(p + "wrap", b"18446744073709551614") is True
    assert lib.incr(p + "wrap", 1) == 2**64 - 1
    assert lib.incr(p + "wrap", 2) == 1
    assert lib.incr(p + "missing-n", 1) is None
    assert lib.decr(p + "missing-n", 1) is None

    # delete / add / replace
    assert lib.add(p + "a", b"1") is True
    assert lib.add(p + "a", b"2") is False
    assert lib.get(p + "a") == b"1"
    assert lib.replace(p + "a", b"3") is True
    assert lib.get(p + "a") == b"3"
    assert lib.replace(p + "nope", b"4") is False
    assert lib.get(p + "nope") is None
    assert lib.delete(p + "a") is True
    assert lib.get(p + "a") is None
    assert lib.add(p + "a", b"5") is True
    assert lib.get(p + "a") == b"5"

    # append / prepend
    assert lib.set(p + "ap", b"mid") is True
    assert lib.append(p + "ap", b">\r\n") is True
    assert lib.prepend(p + "ap", b"\r\n<") is True
    assert lib.get(p + "ap") == b"\r\n<mid>\r\n"
    assert lib.append(p + "nope", b"x") is False
    assert lib.get(p + "nope") is None

    # touch
    assert lib.touch(p + "k1", 100) is True
    assert lib.touch(p + "never-set", 10) is False
    assert lib.get(p + "k1") == b"world"


def test_every_value_reads_back_identically_on_every_replica(cluster):
    """What the libraries wrote through the proxy is the same bytes on every
    replica (writes fan out; incr/append results agree)."""
    host, port = cluster.addr
    a = ADAPTERS[0](host, port)
    try:
        assert a.set("agree:n", b"41") is True
        assert a.incr("agree:n", 1) == 42
        assert a.set("agree:s", b"ab") is True
        assert a.append("agree:s", b"cd") is True
        assert a.prepend("agree:s", b"<") is True
    finally:
        a.close()
    pl = cluster.placement(["agree:n", "agree:s"])
    assert sorted(v.rstrip(b" ") for _, v in pl["agree:n"]) == [b"42", b"42"], pl
    assert [v for _, v in pl["agree:s"]] == [b"<abcd", b"<abcd"], pl


def test_expiry_through_proxy_all_libraries(cluster):
    host, port = cluster.addr
    libs = [a(host, port) for a in ADAPTERS]
    try:
        for a in libs:
            p = f"{a.name}:"
            assert a.set(p + "ttl", b"short", exp=2) is True
            assert a.set(p + "keep", b"long", exp=100) is True
            assert a.set(p + "touched", b"t") is True
            assert a.touch(p + "touched", 2) is True
            assert a.set(p + "untouched", b"u", exp=2) is True
            assert a.touch(p + "untouched", 100) is True
            assert a.get(p + "ttl") == b"short"
        time.sleep(3.2)
        for a in libs:
            p = f"{a.name}:"
            assert a.get(p + "ttl") is None, a.name
            assert a.get(p + "touched") is None, a.name
            assert a.get(p + "keep") == b"long", a.name
            assert a.get(p + "untouched") == b"u", a.name
    finally:
        for a in libs:
            a.close()


# --------------------------------------------------------------------------
# Django
# --------------------------------------------------------------------------

@pytest.fixture
def django_cache(cluster):
    from django.conf import settings
    if not settings.configured:
        settings.configure(
            USE_TZ=True,
            CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        )
        django.setup()
    from django.test.utils import override_settings
    host, port = cluster.addr
    override = override_settings(CACHES={"default": {
        "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
        "LOCATION": f"{host}:{port}",
        "TIMEOUT": 300,
        "KEY_PREFIX": "dj",
        "OPTIONS": {"connect_timeout": 5, "timeout": 5, "no_delay": True},
    }})
    override.enable()
    try:
        from django.core.cache import caches
        c = caches["default"]
        assert type(c).__name__ == "PyMemcacheCache"
        yield c
        c.close()
    finally:
        override.disable()


def test_django_pymemcache_cache_through_proxy(django_cache, cluster):
    c = django_cache
    c.set("greeting", "hello")
    assert c.get("greeting") == "hello"
    c.set("obj", {"a": [1, 2, 3], "b": "\r\nEND\r\n"})
    assert c.get("obj") == {"a": [1, 2, 3], "b": "\r\nEND\r\n"}
    assert c.get("missing") is None
    assert c.get("missing", "dflt") == "dflt"
    # Django's key really went through the proxy to the nodes (prefix:version:key)
    on_nodes = cluster.placement(["dj:1:greeting"])["dj:1:greeting"]
    assert len(on_nodes) == 2, on_nodes

    # hundreds of keys: set_many / get_many / delete_many
    data = {f"many:{i}": f"value {i}" for i in range(500)}
    assert c.set_many(data) == []
    asked = list(data) + [f"absent:{i}" for i in range(100)]
    got = c.get_many(asked)
    assert got == data, f"get_many returned {len(got)} of {len(data)}"
    c.delete_many([f"many:{i}" for i in range(0, 500, 2)])
    got = c.get_many(list(data))
    assert got == {k: v for i, (k, v) in enumerate(data.items()) if i % 2 == 1}

    # add / delete / has_key
    assert c.add("a", 1) is True
    assert c.add("a", 2) is False
    assert c.get("a") == 1
    assert c.has_key("a")
    assert c.delete("a") is True
    assert c.delete("a") is False
    assert not c.has_key("a")

    # incr / decr
    c.set("n", 10)
    assert c.incr("n", 5) == 15
    assert c.decr("n", 3) == 12
    assert c.get("n") == 12
    with pytest.raises(ValueError):
        c.incr("missing-n")

    # get_or_set, touch, expiry
    assert c.get_or_set("gos", "computed") == "computed"
    assert c.get_or_set("gos", "other") == "computed"
    c.set("short", "s", timeout=2)
    c.set("touched", "t", timeout=100)
    assert c.touch("touched", 2) is True
    assert c.touch("never-set", 10) is False
    c.set("untouched", "u", timeout=2)
    assert c.touch("untouched", 100) is True
    assert c.get("short") == "s"
    time.sleep(3.2)
    assert c.get("short") is None
    assert c.get("touched") is None
    assert c.get("untouched") == "u"
    assert c.get("greeting") == "hello"
    # clear() is flush_all through the proxy: every node
    c.clear()
    assert c.get("greeting") is None
    assert cluster.placement(["dj:1:greeting"])["dj:1:greeting"] == []


@pytest.mark.parametrize("adapter", ADAPTERS, ids=[a.name for a in ADAPTERS])
def test_library_through_a_membership_change(adapter, cluster_factory):
    """A client library keeps writing, deleting and reading (single and
    multi-key) while a fourth node joins and the change runs its phases
    (settle 300 ms, warm-up 1 s, rebalance on): every value read is the last
    one written or a miss, never an overwritten or deleted one; once the
    change is over, every key still set reads."""
    cl = cluster_factory(n=3, replicas=2, options={"membership_settle_ms": 300, "warmup_s": 1, "rebalance": True})
    lib = adapter(*cl.addr)
    try:
        keys = [f"{adapter.name}:mc:{i}" for i in range(300)]
        model: dict[str, bytes | None] = {}
        for k in keys:
            assert lib.set(k, b"0:" + k.encode()) is True
            model[k] = b"0:" + k.encode()
        new = cl.add_node()
        cl.write_config([0, 1, 2, new])
        cl.sighup()
        stale = []
        ops = 0
        deadline = time.monotonic() + 4.0          # settle + warm-up + settle, with room
        while time.monotonic() < deadline and ops < 100_000:
            k = keys[ops % len(keys)]
            step = ops % 5
            if step == 0:
                value = b"%d:" % ops + k.encode()
                assert lib.set(k, value) is True
                model[k] = value
            elif step == 1 and ops % 7 == 0:
                lib.delete(k)
                model[k] = None
            elif step == 2:
                batch = keys[(ops * 7) % len(keys):][:20]
                for bk, got in lib.get_multi(batch).items():
                    if got != model[bk]:
                        stale.append((bk, got, model[bk]))
            else:
                got = lib.get(k)
                if got is not None and got != model[k]:
                    stale.append((k, got, model[k]))
            ops += 1
        ph.wait_until(lambda: cl.stats()["proxy_membership_phase"] == "stable", 10, what="the change's end")
        assert not stale, f"{len(stale)} stale or deleted values read during the change: {stale[:5]}"
        missing = [k for k, v in model.items() if v is not None and lib.get(k) != v]
        print(f"{adapter.name}: {ops} operations during the change, 0 stale; "
              f"{len(missing)} of {sum(v is not None for v in model.values())} live keys missing after it")
        assert not missing, f"{len(missing)} live keys do not read their last value after the change: {missing[:5]}"
    finally:
        lib.close()
