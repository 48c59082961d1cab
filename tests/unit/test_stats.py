"""Statistics and the comparison flags: overlapping CIs, wide spread, too good to be true."""

from __future__ import annotations

import math

from orchestrator.results.report import comparison_notes, group_samples, summary_rows
from orchestrator.results.stats import (bootstrap_ci, direction, intervals_overlap, summarize, t975, too_good)
from orchestrator.results.store import Store

PROV = {"host": {"cpu_model": "x"}, "testbed_rev": "abc", "suite_hash": "h", "image_digest": "d"}


def test_t_interval_and_cv():
    s = summarize([100.0, 102.0, 98.0])
    half = t975(2) * 2.0 / math.sqrt(3)
    assert math.isclose(s.ci_low, 100 - half) and math.isclose(s.ci_high, 100 + half)
    assert math.isclose(s.cv, 0.02) and not s.wide
    assert t975(1) == 12.706 and t975(500) == 1.96
    one = summarize([5.0])
    assert one.ci_low is None and one.cv is None and one.median == 5.0


def test_overlap_direction_and_too_good():
    a, b, c = summarize([10.0, 11.0, 12.0]), summarize([11.5, 12.5, 13.5]), summarize([30.0, 31.0, 32.0])
    assert intervals_overlap(a, b) is True and intervals_overlap(a, c) is False
    assert intervals_overlap(a, summarize([1.0])) is None
    assert direction("req/s") == "higher" and direction("us") == "lower" and direction("count") is None
    assert too_good(c, a, "Mbit/s") == 31.0 / 11.0
    assert too_good(b, a, "Mbit/s") is None  # 1.14x: within reason
    assert too_good(c, a, "us") is None  # a latency is not a throughput


def test_bootstrap_ci_brackets_the_median():
    values = [10.0, 11.0, 9.5, 10.5, 10.2, 30.0]
    lo, hi = bootstrap_ci(values)
    assert lo <= sorted(values)[len(values) // 2] <= hi
    assert bootstrap_ci([1.0, 2.0]) is None


def _store(tmp_path, data: dict[str, list[float]], metric="throughput_mbps", unit="Mbit/s"):
    store = Store(tmp_path / "r.sqlite")
    store.begin_run("r1", "s", "s.yaml", "h", "abc", {"server": {}})
    for platform, values in data.items():
        prov = {**PROV, "platform_kind": "native" if platform == "host" else platform}
        for i, v in enumerate(values):
            store.add_sample("r1", platform=platform, workload="netserver", benchmark="np", metric=metric, value=v,
                             unit=unit, repetition=i, params={"test": "TCP_STREAM"}, status="ok", reason=None,
                             provenance=prov)
    return store


def test_too_good_to_be_true_is_flagged_against_native_by_kind(tmp_path):
    # The native platform is found by its kind, whatever the suite calls it.
    store = _store(tmp_path, {"host": [1000.0, 1010.0, 990.0], "unikernel": [9000.0, 9100.0, 8900.0],
                              "runc": [980.0, 1000.0, 990.0]})
    rows = {r["platform"]: r for r in summary_rows(store, "r1")}
    assert rows["unikernel"]["flags"] == ["too good? 9.0x native"]
    assert rows["runc"]["flags"] == [] and rows["host"]["flags"] == []
    notes = comparison_notes(store, "r1")
    assert any("unikernel is 9.0x native (host)" in n and "too good to be true" in n for n in notes)
    # runc and host overlap: the note says the difference is not established.
    assert any("95% CIs overlap for host~runc" in n for n in notes)


def test_wide_spread_is_flagged(tmp_path):
    store = _store(tmp_path, {"host": [500.0, 1500.0, 1000.0], "runc": [1000.0, 1001.0, 999.0]})
    g = group_samples(list(store.samples("r1")))[0]
    assert g.flags == {"host": ["wide"]}
    assert len(g.notes) == 1 and "CV above 10% on host" in g.notes[0]


def test_clear_difference_has_no_warning(tmp_path):
    store = _store(tmp_path, {"host": [1000.0, 1001.0, 999.0], "runc": [800.0, 801.0, 799.0]})
    assert comparison_notes(store, "r1") == []
