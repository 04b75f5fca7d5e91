"""Checks the libmemcached fixtures against a second libmemcached generation.

The fixtures come from Debian's libmemcached 1.1.4. pylibmc's wheel on PyPI
bundles its own, older libmemcached (1.0.x). Run this with a Python that has
that wheel (not Debian's python3-pylibmc): for every fixture whose servers are
on loopback it starts memcached, stores every key through that pylibmc and
requires each key on the fixture's node. It writes nothing.

    python3 -m venv /tmp/pylibmc-venv
    /tmp/pylibmc-venv/bin/pip install pylibmc
    /tmp/pylibmc-venv/bin/python scripts/ring-oracle/pylibmc_wheel_check.py
"""

import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pylibmc
from libmemcached_placements import pylibmc_owners
from oracle_common import DIGITS, FIXTURES, load_shared_keys

MODES = {"libmemcachedWeighted": "weighted", "libmemcachedClassic": "classic"}


def main():
    print(f"pylibmc {pylibmc.__version__} from {os.path.dirname(pylibmc.__file__)}, "
          f"libmemcached {pylibmc.libmemcached_version}")
    keys = load_shared_keys()
    checked = 0
    for path in sorted(glob.glob(os.path.join(FIXTURES, "libmemcached-*.json"))):
        with open(path, encoding="utf-8") as f:
            fixture = json.load(f)
        nodes = [(n["host"], n["port"], n["weight"]) for n in fixture["nodes"]]
        if not all(host.startswith("127.") for host, _, _ in nodes):
            continue
        expected = [DIGITS.index(c) for c in fixture["sharedKeyOwners"]] + [o for _, o in fixture["probes"]]
        sent = [k.encode() for k in keys[:fixture["sharedKeyCount"]]] + [k.encode() for k, _ in fixture["probes"]]
        seen = pylibmc_owners(MODES[fixture["ring"]], nodes, sent)
        wrong = sum(a != b for a, b in zip(seen, expected))
        print(f"{os.path.basename(path)}: {len(sent) - wrong}/{len(sent)} keys on the fixture's node")
        if wrong:
            raise SystemExit(1)
        checked += 1
    print(f"{checked} fixtures agree")


if __name__ == "__main__":
    main()
