#!/usr/bin/python3
"""Fixtures from libmemcached: where KETAMA_WEIGHTED and KETAMA put each key.

Two views of the same library (Debian's libmemcached11, the one pylibmc links):
  * libmemcached_oracle.c, built here with gcc, asks memcached_generate_hash()
    for every key and dumps the continuum. It needs no servers, so it also
    covers host names that do not resolve.
  * pylibmc, for server lists on loopback: real memcached processes are
    started, every key is stored through pylibmc with the same behaviours,
    and each memcached is asked which keys it holds. The answers must equal
    the C oracle's, or this script stops.

Writes Tests/CacheProxyTests/Fixtures/keys.txt and libmemcached-*.json.
Run with Debian's python3 (python3-pylibmc is packaged for it):
    /usr/bin/python3 scripts/ring-oracle/libmemcached_placements.py
"""

import ctypes
import os
import subprocess
import sys
import tempfile

import pylibmc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oracle_common import (HERE, Processes, free_ports, md5_hash, observe_owners, one_at_a_time_hash,
                           owners_string, port_is_free, probe_keys, shared_keys, start_memcached,
                           write_fixture, write_shared_keys)

BEHAVIOR = {"weighted": {"ketama_weighted": True}, "classic": {"ketama": True}}
KEY_HASH = {"weighted": md5_hash, "classic": one_at_a_time_hash}


def server_sets():
    """(fixture name, mode, [(host, port, weight)], run live through pylibmc)."""
    p = free_ports("127.0.0.1", 25)
    hostnames = [("cache-%02d.example.com" % i, 11211 if i % 3 == 0 else 11211 + i, 1) for i in range(10)]
    return [
        ("libmemcached-weighted-3", "weighted", [("127.0.0.1", p[0], 1), ("127.0.0.1", p[1], 1), ("127.0.0.1", p[2], 1)], True),
        ("libmemcached-weighted-port11211", "weighted", [("127.0.0.2", 11211, 1), ("127.0.0.1", p[0], 1), ("127.0.0.3", 11211, 1)], True),
        ("libmemcached-weighted-123", "weighted", [("127.0.0.1", p[0], 1), ("127.0.0.1", p[1], 2), ("127.0.0.1", p[2], 3)], True),
        # float32 arithmetic gives the weight-1 nodes 28 points here (exact maths says 32)
        ("libmemcached-weighted-float", "weighted", [("127.0.0.1", p[i], w) for i, w in enumerate([1, 1, 5, 9, 9])], True),
        # 25 equal weights: float32 gives each node 156 points, not 160
        ("libmemcached-weighted-25", "weighted", [("127.0.0.1", port, 1) for port in p], True),
        ("libmemcached-weighted-hostnames-10", "weighted", [(h, port, i % 4 + 1) for i, (h, port, _) in enumerate(hostnames)], False),
        # the weight-1 node gets floor(80/1001) * 4 = 0 points and owns nothing
        ("libmemcached-weighted-zero-points", "weighted", [("127.0.0.1", p[0], 1), ("127.0.0.1", p[1], 1000)], True),
        # 127.0.1.1-33 and 127.0.1.87-... share the point 2907104740: list order breaks the tie
        ("libmemcached-weighted-tie-ab", "weighted", [("127.0.1.1", 11211, 1), ("127.0.1.87", 11211, 1)], True),
        ("libmemcached-weighted-tie-ba", "weighted", [("127.0.1.87", 11211, 1), ("127.0.1.1", 11211, 1)], True),
        # libmemcached takes host names up to 1024 bytes and hashes them whole
        ("libmemcached-weighted-long-hostnames", "weighted", [("a" * 1024, 11211, 1), ("b" * 1000, 11300, 1), ("short", 11211, 1)], False),
        ("libmemcached-classic-3", "classic", [("127.0.0.1", p[0], 1), ("127.0.0.1", p[1], 1), ("127.0.0.1", p[2], 1)], True),
        ("libmemcached-classic-port11211", "classic", [("127.0.0.2", 11211, 1), ("127.0.0.1", p[0], 1), ("127.0.0.3", 11211, 1)], True),
        ("libmemcached-classic-hostnames-8", "classic", [(h, port, 1) for h, port, _ in hostnames[:8]], False),
        # one_at_a_time collides often: these two share several points
        ("libmemcached-classic-tie-ab", "classic", [("127.0.2.241", 11211, 1), ("127.0.4.215", 11211, 1)], True),
        ("libmemcached-classic-tie-ba", "classic", [("127.0.4.215", 11211, 1), ("127.0.2.241", 11211, 1)], True),
    ]


def build_oracle(workdir):
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libmemcached"],
                           check=True, capture_output=True, text=True).stdout.split()
    exe = os.path.join(workdir, "libmemcached_oracle")
    subprocess.run(["gcc", "-O1", "-Wall", "-Werror", "-o", exe,
                    os.path.join(HERE, "libmemcached_oracle.c")] + flags, check=True)
    return exe


def ask_oracle(exe, mode, nodes, keys, order="behavior-first"):
    request = f"{mode} {order}\n{len(nodes)}\n" + "".join(f"{h} {p} {w}\n" for h, p, w in nodes)
    request = request.encode() + b"".join(k + b"\n" for k in keys)
    out = subprocess.run([exe], input=request, check=True, capture_output=True).stdout.decode().splitlines()
    count = int(out[0].split()[1])
    continuum = [tuple(map(int, line.split())) for line in out[1:1 + count]]
    owners = [int(line) for line in out[1 + count:]]
    assert len(owners) == len(keys)
    return continuum, owners


def pylibmc_owners(mode, nodes, keys):
    """Store every key through pylibmc on live memcached, then see who holds it."""
    with Processes() as procs:
        for host, port, _ in nodes:
            if not port_is_free(host, port):
                raise SystemExit(f"{host}:{port} is busy; cannot run the live check")
            start_memcached(procs, host, port)
        client = pylibmc.Client([f"{h}:{p}:{w}" for h, p, w in nodes], behaviors=BEHAVIOR[mode])
        for i in range(0, len(keys), 500):
            failed = client.set_multi({k: b"x" for k in keys[i:i + 500]})
            if failed:
                raise RuntimeError(f"pylibmc could not store {failed[:3]!r}")
        client.disconnect_all()
        return observe_owners([(h, p) for h, p, _ in nodes], keys)


def library_version():
    lib = ctypes.CDLL("libmemcached.so.11")
    lib.memcached_lib_version.restype = ctypes.c_char_p
    return lib.memcached_lib_version().decode()


def show_classic_weights_depend_on_call_order(exe):
    """Why the ring refuses weights in classic mode: libmemcached itself gives
    two different rings for the same list, depending on the order of calls."""
    nodes = [("127.0.0.1", 31200, 1), ("127.0.0.1", 31201, 2)]
    first = ask_oracle(exe, "classic", nodes, [], order="servers-first")[0]
    second = ask_oracle(exe, "classic", nodes, [], order="behavior-first")[0]
    assert first != second
    print(f"classic KETAMA with weights 1,2: servers-first gives {len(first)} points, "
          f"behavior-first (pylibmc's order) {len(second)}; the ring refuses weights in classic mode")


def main():
    keys = shared_keys()
    write_shared_keys(keys)
    key_bytes = [k.encode() for k in keys]
    version = library_version()
    with tempfile.TemporaryDirectory() as workdir:
        exe = build_oracle(workdir)
        show_classic_weights_depend_on_call_order(exe)
        for name, mode, nodes, live in server_sets():
            continuum, _ = ask_oracle(exe, mode, nodes, [])
            if ask_oracle(exe, mode, nodes, [], order="servers-first")[0] != continuum:
                raise SystemExit(f"{name}: libmemcached's answer depends on the order of calls")
            probes, covered, arcs = probe_keys([v for v, _ in continuum], KEY_HASH[mode], "p:")
            probe_bytes = [k.encode() for k in probes]
            _, owners = ask_oracle(exe, mode, nodes, key_bytes + probe_bytes)
            checked_by = [f"libmemcached {version}: memcached_generate_hash"]
            if live:
                seen = pylibmc_owners(mode, nodes, key_bytes + probe_bytes)
                mismatches = sum(a != b for a, b in zip(seen, owners))
                if mismatches:
                    raise SystemExit(f"{name}: pylibmc placed {mismatches} keys elsewhere than libmemcached")
                checked_by.append(f"pylibmc {pylibmc.__version__} storing on live memcached")
            values = [v for v, _ in continuum]
            ties = len(values) - len(set(values))
            write_fixture(name, {
                "oracle": checked_by,
                "ring": {"weighted": "libmemcachedWeighted", "classic": "libmemcachedClassic"}[mode],
                "nodes": [{"host": h, "port": p, "weight": w} for h, p, w in nodes],
                "continuum": [x for pair in continuum for x in pair],
                "tiedPoints": ties,
                "sharedKeyCount": len(keys),
                "sharedKeyOwners": owners_string(owners[:len(keys)]),
                "probeArcs": [covered, arcs],
                "probes": [[k, o] for k, o in zip(probes, owners[len(keys):])],
            })
            print(f"  {mode}, {len(nodes)} nodes, {len(continuum)} points, {ties} tied, "
                  f"probes cover {covered}/{arcs} arcs, live={live}")


if __name__ == "__main__":
    main()
