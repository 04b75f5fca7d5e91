"""scripts/benchkit, the code behind scripts/bench-compare: when a ratio may be
a headline, what the host-load watch sees, what the pictures are drawn from
(plain Python: matplotlib is not needed here), and the cache-aside miss-ratio
driver against a real server (the target: the node, or memcached with
MEMCLUSTER_TARGET=memcached)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections import Counter

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))

from benchkit import evictionsim, hostload, missratio, plots, report, spread  # noqa: E402
from benchkit.targets import read_cpu_seconds  # noqa: E402

QUIET = {"host_before": {"foreign_cores": 0.0, "steal_cores": 0.0}, "host_during": {"foreign_cores": 0.0, "steal_cores": 0.0}}


def runs(values, **extra):
    return [dict(QUIET, ops_per_second=v, **extra) for v in values]


def ratio_of(candidate, reference, **options):
    return spread.summarise_ratio(candidate, reference, "ops_per_second", options.get("max_spread", 0.25),
                                  options.get("busy", 0.25))


def test_agreeing_rounds_make_a_headline_with_their_spread():
    ratio = ratio_of(runs([110, 120, 115]), runs([100, 100, 100]))
    assert ratio.headline and ratio.reasons == []
    assert (ratio.median, ratio.low, ratio.high) == (1.15, 1.1, 1.2)
    assert ratio.cell() == "1.15x (1.10-1.20)"


def test_rounds_that_disagree_are_flagged_not_headlined():
    ratio = ratio_of(runs([80, 130, 110]), runs([100, 100, 100]))
    assert not ratio.headline
    assert ratio.reasons == ["rounds disagree by 45%"]
    assert ratio.cell().startswith("(1.10x?) 0.80-1.30 **rounds disagree")


def test_one_round_has_no_spread_and_is_flagged():
    ratio = ratio_of(runs([120]), runs([100]))
    assert not ratio.headline and ratio.reasons == ["1 round, no spread"]


def test_foreign_load_in_any_run_of_a_round_flags_the_ratio():
    busy = runs([120, 120, 120])
    busy[1]["host_before"] = {"foreign_cores": 0.9, "steal_cores": 0.0}
    ratio = ratio_of(busy, runs([100, 100, 100]))
    assert ratio.reasons == ["host busy in 1/3 rounds"]
    stolen = runs([100, 100, 100])
    stolen[2]["host_during"] = {"foreign_cores": 0.0, "steal_cores": 0.5}
    assert ratio_of(runs([120, 120, 120]), stolen).reasons == ["host busy in 1/3 rounds"]


def test_a_generator_behind_its_schedule_flags_the_ratio():
    late = runs([100, 100, 100])
    late[0]["generator_behind"] = True
    assert ratio_of(late, runs([100, 100, 100])).reasons == ["generator behind in 1/3 rounds"]


def _row(generator, candidate, reference, confirms=None):
    return {"workload": "memcaslap" if generator == "memcaslap" else "w", "generator": generator,
            "confirms": confirms, "reference": "ref",
            "runs": {"ref": runs(reference), "ours": runs(candidate)},
            "results": {"ref": {"ops_per_second": 100}, "ours": {"ops_per_second": 100}}}


@pytest.mark.parametrize("ours, theirs, verdict", [
    ([110, 112, 111], [108, 109, 115], "confirmed"),
    ([110, 112, 111], [150, 152, 151], "**generators disagree**"),
    ([110, 112, 111], [80, 150, 110], "not confirmed: flagged (see table)"),
])
def test_memcaslap_confirms_or_contradicts_memcluster_bench(ours, theirs, verdict):
    rows = [_row("memcluster-bench", ours, [100] * 3), _row("memcaslap", theirs, [100] * 3, confirms="w")]
    report.table(rows, "t", 0.25, 0.25)
    line = [l for l in report.confirmation(rows).splitlines() if l.startswith("| ops/s")][0]
    assert line.endswith(f"| {verdict} |")


def test_host_watch_counts_a_process_that_is_not_ours_as_foreign():
    hog = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 3\nwhile time.time() < end: pass"])
    try:
        time.sleep(0.3)
        hog_cpu0 = read_cpu_seconds(hog.pid)
        not_ours = hostload.HostWatch(lambda: 0.0).start()
        time.sleep(1.5)
        load = not_ours.stop()
        hog_cores = (read_cpu_seconds(hog.pid) - hog_cpu0) / load.seconds
    finally:
        hog.kill()
        hog.wait()
    assert hog_cores > 0.3, "the busy loop got no CPU: cannot check"
    # Everything the hog used is foreign (other work may add more, never less).
    assert load.foreign_cores >= hog_cores - 0.1, (load, hog_cores)


def test_host_watch_does_not_count_our_own_processes():
    hog = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 3\nwhile time.time() < end: pass"])
    try:
        time.sleep(0.3)
        ours = hostload.HostWatch(lambda: read_cpu_seconds(hog.pid)).start()
        time.sleep(1.5)
        load = ours.stop()
    finally:
        hog.kill()
        hog.wait()
    assert load.ours_cores > 0.3, "the busy loop got no CPU: cannot check"
    assert load.host_cores >= load.ours_cores - 0.1, load


def test_value_sizes_are_fixed_per_key_and_log_uniform():
    sizes = [missratio.value_size(i, 50, 10240) for i in range(20000)]
    assert min(sizes) >= 50 and max(sizes) <= 10240
    assert sizes[:100] == [missratio.value_size(i, 50, 10240) for i in range(100)]
    assert sum(s < 500 for s in sizes) > sum(s > 5000 for s in sizes)   # log-uniform: small ones dominate
    assert abs(sum(sizes) / len(sizes) / missratio.mean_value_size(50, 10240) - 1) < 0.05


def test_zipf_makes_key_zero_the_hottest():
    import random
    zipf = missratio.Zipf(1000, 0.99, random.Random(3))
    counts = Counter(zipf.sample() for _ in range(20000))
    assert counts.most_common(1)[0][0] == 0
    assert counts[0] > 5 * counts[50] > 0
    assert max(counts) < 1000


def test_eviction_replay_asks_for_the_keys_the_driver_asks_for(monkeypatch):
    asked = []

    class Recorder:
        def __init__(self, port, timeout):
            pass

        def get_many(self, names):
            asked.extend(names)
            return set()

        def set_many(self, items):
            return 0

        def close(self):
            pass

    monkeypatch.setattr(missratio, "Client", Recorder)
    missratio.run(0, keys=2000, requests=5000, scan_share=0.2, scan_length=100, seed=1, time_limit=60)
    replayed = [missratio.key_name(i) for i, _ in evictionsim.requests(2000, 5000, 0.2, scan_length=100, seed=1)]
    assert asked == replayed


def test_every_policy_misses_only_new_keys_when_all_fit():
    seen, first_times = set(), 0
    for position, (index, _) in enumerate(evictionsim.requests(300, 6000, 0.0)):
        first_times += position >= 3000 and index not in seen
        seen.add(index)
    for make in evictionsim.POLICIES.values():
        assert evictionsim.miss_ratio(make(1 << 30), keys=300, count=6000, scan_share=0.0) == first_times / 3000


def test_clock_keeps_a_read_item_and_asks_two_reads_of_a_big_one():
    cache = evictionsim.ReadCountClock(budget=10_000)
    cache.write("small", 100)
    cache.write("big", 4000)
    cache.read("small")
    cache.read("big")
    for index in range(30):          # 30 x 200 bytes of unread items push both through one pass
        cache.write(index, 200)
    assert cache.read("small") and not cache.read("big")


def test_segment_store_evicts_unread_big_items_before_unread_small_ones():
    store = evictionsim.SegmentStore(budget=4 << 20, shards=1)
    for round_ in range(1400):           # about 1.9 times the budget of small and big records
        for index in range(10):
            store.write(("small", round_, index), 136)
        store.write(("big", round_), 4040)
    assert all(store.read(("small", 0, index)) for index in range(10))
    assert not any(store.read(("big", round_)) for round_ in range(300))


def test_segment_store_keeps_values_of_nearly_one_size_in_one_band():
    """Sizes 140-160 never reach twice the small band's mean: the two-band
    store behaves exactly as one list."""
    rng = random.Random(7)
    stores = [evictionsim.SegmentStore(budget=2 << 20, shards=2, bands=bands) for bands in (1, 2)]
    hits = [0, 0]
    for _ in range(60_000):
        key = int(rng.paretovariate(0.8)) % 40_000
        for which, store in enumerate(stores):
            if store.read(key):
                hits[which] += 1
            else:
                store.write(key, 140 + key % 21)
    assert hits[0] == hits[1] > 0
    assert all(not shard.lists[1] for shard in stores[1].shards)


def test_segment_store_keeps_read_big_items():
    store = evictionsim.SegmentStore(budget=4 << 20, shards=1)
    for round_ in range(1400):
        store.read("hot big")  # a miss the first time only
        if round_ == 0:
            store.write("hot big", 4040)
        for index in range(10):
            store.write((round_, index), 136)
        store.write(("big", round_), 4040)
    assert store.read("hot big")


def test_s3fifo_keeps_a_read_item_through_a_scan_that_empties_lru():
    lru, s3 = evictionsim.LRU(budget=10_000), evictionsim.S3FIFO(budget=10_000)
    for cache in (lru, s3):
        cache.write("hot", 100)
        for round_ in range(5):
            cache.read("hot")
            for index in range(200):   # a scan of 200 x 100 bytes, twice the budget
                cache.write((round_, index), 100)
    assert s3.read("hot") and not lru.read("hot")


def test_cache_aside_sets_each_missed_key_and_gets_it_back(server, connect):
    counts = missratio.run(server.addr[1], keys=3000, requests=12000, batch=16, seed=5, measure_from=0.0,
                           time_limit=120)
    # Nothing is evicted from the default 64 MB: every key misses once, then hits.
    assert counts.set_failures == 0
    assert counts.misses == counts.sets
    assert 0 < counts.misses <= 3000 and counts.gets == 12000
    conn = connect(server)
    for index in range(5):
        reply = conn.request(b"get " + missratio.key_name(index) + b"\r\n", done=b"END\r\n")
        size = missratio.value_size(index, 50, 10240)
        assert reply.startswith(b"VALUE %s 0 %d\r\n" % (missratio.key_name(index), size)), reply[:80]


def test_one_hit_scans_always_miss_and_are_counted_apart(server):
    counts = missratio.run(server.addr[1], keys=500, requests=20000, scan_share=0.3, scan_length=50,
                           max_size=2000, seed=9, measure_from=0.8, time_limit=120)
    assert counts.scan_gets > 0 and counts.scan_misses == counts.scan_gets
    assert counts.gets + counts.scan_gets == 4000
    # The 500 keys (~200 KB) fit in 64 MB with every scan key: once each has been
    # asked for, it only hits; the few misses left are keys seen for the first time.
    assert counts.miss_ratio < 0.01
    assert counts.overall_miss_ratio > 0.2


def test_stored_ratio_reads_back_as_the_same_cell():
    ratio = ratio_of(runs([80, 130, 110]), runs([100, 100, 100]))
    assert report.ratio_cell(ratio.as_dict()) == ratio.cell()
    assert report.ratio_text(None, 5) == "-" and report.ratio_text(3, 0) == "-"
    assert report.ratio_text(0.15, 0.1) == "1.50x"


def test_each_nine_is_equally_wide_on_the_percentile_axis():
    import math
    widths = [math.log10(plots.x_of(p)) for p in plots.NINES]
    assert widths[0] == 0.0
    assert all(abs((b - a) - 1) < 1e-9 for a, b in zip(widths, widths[1:]))
    assert plots.x_of(100) == 1e7   # the max is clamped, not a division by zero


def _stored_row(workload, ratio_dicts):
    return {"workload": workload, "generator": "memcluster-bench", "runs": {}, "ratios": {"ours": ratio_dicts}}


def test_pictures_cover_every_part_and_each_thread_count_of_a_sweep():
    results = {"node": [_stored_row("a", {})], "tls_proxy": [_stored_row("b", {})], "proxy": [],
               "sweep": {"node -t 2": [_stored_row("c", {})]}}
    names = [name for name, _, _ in plots.sections(results)]
    assert names == ["node", "tls_proxy", "sweep-nodet2"]


def test_ratio_picture_lists_measured_ratios_and_skips_missing_ones():
    measured = ratio_of(runs([110, 120, 115]), runs([100, 100, 100])).as_dict()
    missing = spread.Ratio([]).as_dict()
    results = {"node": [_stored_row("get", {"ops_per_second": measured, "p99_us": missing})],
               "sweep": {"node -t 1": [_stored_row("get", {"server_cpu_us_per_request": measured})]}}
    labels = [label for label, _ in plots.ratio_entries(results)]
    assert labels == ["get [memcluster-bench] ours: ops/s",
                      "thread sweep, node -t 1: get [memcluster-bench] ours: CPU/req"]


@pytest.mark.parametrize("zipf_windows, expected", [
    ([0.5, 0.4, 0.3, 0.2, 0.2, 0.2, 0.2, 0.2], True),         # fell while filling, flat over the measured half
    ([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2], False),        # still falling: too few requests per key
    ([0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0], True),         # no misses left at all
    ([0.5, 0.5, 0.5, 0.5, 0.5, 0.5], False),                  # too few windows to tell
])
def test_a_miss_ratio_has_settled_only_when_it_stopped_falling(zipf_windows, expected):
    windows = [(i * 100, ratio) for i, ratio in enumerate(zipf_windows)]
    assert missratio.settled(windows) is expected
