#!/usr/bin/python3
"""Finds the server names whose continuum points collide, used by the tie fixtures.

A tie is two servers owning the same 32-bit point; which one a key in that arc
goes to is decided by the order of equal points after sorting. The fixture
generators hard-code what this prints, so it only needs rerunning to explain
or change them.
"""

import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oracle_common import one_at_a_time_hash


def md5_points(base, per_hash_strings=40):
    points = []
    for k in range(per_hash_strings):
        digest = hashlib.md5(f"{base}-{k}".encode()).digest()
        points += [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    return points


def classic_points(base):
    return [one_at_a_time_hash(f"{base}-{k}".encode()) for k in range(100)]


def first_collisions(names, points_of, wanted=3):
    owner, found = {}, []
    for name in names:
        for value in set(points_of(name)):
            if value in owner and owner[value] != name:
                found.append((owner[value], name, value))
            owner[value] = name
        if len(found) >= wanted:
            break
    return found


def loopback_hosts():
    return (f"127.0.{x}.{y}" for x in range(1, 256) for y in range(1, 255))


def main():
    # Port 11211, so the point strings are the bare addresses (live memcached can bind them).
    print("weighted, loopback hosts:", first_collisions(loopback_hosts(), md5_points))
    print("classic, loopback hosts:", first_collisions(loopback_hosts(), classic_points))
    # twemproxy names: a short name against a longer one that sorts first byte-wise,
    # so list order, byte order and length-then-bytes order give different answers.
    short = {}
    for i in range(4000):
        for value in md5_points(f"z{i}"):
            short[value] = f"z{i}"
    for j in range(6000):
        name = f"a{j:05d}"
        hits = [(short[v], name, v) for v in md5_points(name) if v in short]
        if hits:
            print("twemproxy names:", hits[0])
            break


if __name__ == "__main__":
    main()
