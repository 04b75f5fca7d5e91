#!/usr/bin/python3
"""Fixtures from twemproxy (nutcracker) with `hash: md5, distribution: ketama`.

For each server list: start one memcached per server and one nutcracker in
front of them, all on loopback; store every key through nutcracker; then ask
each memcached directly which keys it holds. What nutcracker did is the
fixture. Everything started here is stopped by PID when a list is done.

Probe keys (one per arc of the continuum) are chosen with libmemcached's
continuum for the same point strings (a named server `name` is the libmemcached
host `name` on port 11211); they are only candidates, nutcracker decides. For
names past nutcracker's 272-byte cut the two continua differ, so there the
probes are just more keys.

Writes Tests/CacheProxyTests/Fixtures/twemproxy-*.json; reads keys.txt.
    /usr/bin/python3 scripts/ring-oracle/twemproxy_placements.py
"""

import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from libmemcached_placements import ask_oracle, build_oracle
from oracle_common import (Processes, TextClient, free_ports, md5_hash, observe_owners,
                           owners_string, port_is_free, probe_keys, shared_keys, start_memcached,
                           wait_listening, write_fixture, write_shared_keys)

SHARED_KEYS = 3000


def server_sets():
    """(fixture name, [(addr, port, weight, name or None)])."""
    p = free_ports("127.0.0.1", 25)
    return [
        ("twemproxy-3", [("127.0.0.1", p[0], 1, None), ("127.0.0.1", p[1], 1, None), ("127.0.0.1", p[2], 1, None)]),
        ("twemproxy-port11211", [("127.0.0.2", 11211, 1, None), ("127.0.0.1", p[0], 1, None), ("127.0.0.3", 11211, 1, None)]),
        ("twemproxy-123", [("127.0.0.1", p[0], 1, None), ("127.0.0.1", p[1], 2, None), ("127.0.0.1", p[2], 3, None)]),
        ("twemproxy-float", [("127.0.0.1", p[i], w, None) for i, w in enumerate([1, 1, 5, 9, 9])]),
        # names replace host:port in the point strings, whatever the port
        ("twemproxy-named-6", [("127.0.0.1", p[0], 1, "cache-a"), ("127.0.0.2", 11211, 2, "cache-b"),
                               ("127.0.0.1", p[1], 1, "cache-c"), ("127.0.0.1", p[2], 3, "cache-d"),
                               ("127.0.0.1", p[3], 1, "east.cache-e"), ("127.0.0.1", p[4], 1, "10.0.0.9:11211")]),
        ("twemproxy-25", [("127.0.0.1", port, 1, None) for port in p]),
        ("twemproxy-zero-points", [("127.0.0.1", p[0], 1, None), ("127.0.0.1", p[1], 1000, None)]),
        ("twemproxy-tie-ab", [("127.0.1.1", 11211, 1, None), ("127.0.1.87", 11211, 1, None)]),
        ("twemproxy-tie-ba", [("127.0.1.87", 11211, 1, None), ("127.0.1.1", 11211, 1, None)]),
        # z940-?? and a00067-?? share the point 2691946715 (find_ties.py): is the
        # tie broken by list order, by name bytes, or by name length first?
        ("twemproxy-named-tie-az", [("127.0.0.1", p[0], 1, "a00067"), ("127.0.0.1", p[1], 1, "z940")]),
        ("twemproxy-named-tie-za", [("127.0.0.1", p[0], 1, "z940"), ("127.0.0.1", p[1], 1, "a00067")]),
        # nutcracker hashes at most 272 bytes of a point string (its buffer holds 273
        # with the NUL): "A...A-0".."A...A-9" fit, "A...A-10" and up are cut
        ("twemproxy-long-names", [("127.0.0.1", p[0], 1, "long-" + "x" * 265), ("127.0.0.1", p[1], 1, "longer-" + "y" * 293),
                                  ("127.0.0.1", p[2], 2, "short")]),
    ]


def as_libmemcached(nodes):
    """The libmemcached server list whose point strings are nutcracker's."""
    return [(name, 11211, w) if name else (addr, port, w) for addr, port, w, name in nodes]


def nutcracker_yaml(listen_port, nodes):
    lines = [
        "ring:",
        f"  listen: 127.0.0.1:{listen_port}",
        "  hash: md5",
        "  distribution: ketama",
        "  auto_eject_hosts: false",
        "  timeout: 5000",
        "  servers:",
    ]
    for addr, port, weight, name in nodes:
        lines.append(f"   - {addr}:{port}:{weight}" + (f" {name}" if name else ""))
    return "\n".join(lines) + "\n"


def nutcracker_owners(nodes, keys, workdir):
    with Processes() as procs:
        for addr, port, _, _ in nodes:
            if not port_is_free(addr, port):
                raise SystemExit(f"{addr}:{port} is busy")
            start_memcached(procs, addr, port)
        listen, stats = free_ports("127.0.0.1", 2, start=32200)
        conf = os.path.join(workdir, "nutcracker.yml")
        with open(conf, "w") as f:
            f.write(nutcracker_yaml(listen, nodes))
        subprocess.run(["nutcracker", "-t", "-c", conf], check=True, capture_output=True)
        log = os.path.join(workdir, "nutcracker.log")
        proxy = procs.start(["nutcracker", "-c", conf, "-s", str(stats), "-a", "127.0.0.1",
                             "-o", log, "-p", os.path.join(workdir, "nutcracker.pid")])
        wait_listening("127.0.0.1", listen, proxy)
        client = TextClient("127.0.0.1", listen)
        try:
            client.set_many(keys)
        finally:
            client.close()
        return observe_owners([(addr, port) for addr, port, _, _ in nodes], keys)


def version():
    out = subprocess.run(["nutcracker", "-V"], capture_output=True, text=True)
    return (out.stdout + out.stderr).split("\n")[0].strip()


def main():
    keys = shared_keys()
    write_shared_keys(keys)  # same content as libmemcached_placements.py writes
    key_bytes = [k.encode() for k in keys[:SHARED_KEYS]]
    with tempfile.TemporaryDirectory() as workdir:
        exe = build_oracle(workdir)
        only = sys.argv[1] if len(sys.argv) > 1 else ""
        for name, nodes in server_sets():
            if only not in name:
                continue
            continuum, _ = ask_oracle(exe, "weighted", as_libmemcached(nodes), [])
            probes, covered, arcs = probe_keys([v for v, _ in continuum], md5_hash, "t:")
            probe_bytes = [k.encode() for k in probes]
            owners = nutcracker_owners(nodes, key_bytes + probe_bytes, workdir)
            write_fixture(name, {
                "oracle": [f"{version()} storing on live memcached"],
                "ring": "twemproxy",
                "nodes": [{"host": a, "port": p, "weight": w, **({"name": n} if n else {})}
                          for a, p, w, n in nodes],
                "sharedKeyCount": len(key_bytes),
                "sharedKeyOwners": owners_string(owners[:len(key_bytes)]),
                "probeArcs": [covered, arcs],
                "probes": [[k, o] for k, o in zip(probes, owners[len(key_bytes):])],
            })
            print(f"  {len(nodes)} nodes, probes cover {covered}/{arcs} arcs")


if __name__ == "__main__":
    main()
