"""`testbed compare`: every verdict on synthetic runs, the provenance differences, refusals."""

from __future__ import annotations

import pytest
from results_data import compare_store

from orchestrator import errors
from orchestrator.results.compare import (FASTER, HIGHER, LOWER, NO_CHANGE, NOT_COMPARABLE, SLOWER, compare_runs,
                                          verdict)

@pytest.fixture
def store(tmp_path):
    return compare_store(tmp_path / "r.sqlite")


def rows_by(cmp):
    return {(r.platform, r.metric): r for r in cmp.rows}


def test_every_verdict(store):
    cmp = compare_runs(store, "A", "B")
    rows = rows_by(cmp)
    rps = rows[("vm", "requests_per_s")]
    assert rps.verdict == SLOWER and rps.change_pct == pytest.approx(-50.0, abs=0.5)
    assert rps.ci_low_pct < -45 and rps.ci_high_pct > -55 and rps.p < 0.01 and rps.p_adjusted < 0.05
    assert rows[("vm", "latency_avg_ms")].verdict == SLOWER  # higher latency is slower
    assert rows[("runc", "requests_per_s")].verdict == FASTER
    assert rows[("vm", "startup_ms")].verdict == NO_CHANGE
    assert rows[("vm", "get_misses")].verdict == HIGHER  # a count has no better direction
    only_b = rows[("vm", "transactions_per_s")]
    assert only_b.verdict == NOT_COMPARABLE and "no successful sample in A" in only_b.why
    small = rows[("gvisor", "requests_per_s")]
    assert small.why == "n too small for an interval" and small.ci_low_pct is None
    assert small.verdict == NO_CHANGE  # 3 vs 3 can never reach p < 0.05 with Mann-Whitney: stated, not guessed
    assert cmp.test.startswith("Mann-Whitney") and "Benjamini-Hochberg" in cmp.correction


def test_verdict_words():
    assert verdict("req/s", +5, True) == FASTER and verdict("req/s", -5, True) == SLOWER
    assert verdict("ms", -5, True) == FASTER and verdict("ms", +5, True) == SLOWER
    assert verdict("count", -1, True) == LOWER and verdict("req/s", -5, False) == NO_CHANGE


def test_provenance_differences_are_listed(store):
    diffs = {what: (a, b) for what, a, b in compare_runs(store, "A", "B").provenance_diffs}
    assert diffs["server kernel"] == ("6.1.0-test", "6.1.0-other")
    assert diffs["vm accel"] == ("kvm", "tcg")
    assert diffs["tool redis-benchmark"] == ("7.0.A", "7.0.B")
    assert "suite" not in diffs


def test_runs_of_different_suites_are_refused_unless_forced(store):
    with pytest.raises(errors.ConfigError) as exc:
        compare_runs(store, "A", "C")
    msg = str(exc.value)
    assert "\n" not in msg and "'quick'" in msg and "'other-suite'" in msg and "--force" in msg
    forced = compare_runs(store, "A", "C", force=True)
    assert ("suite", "quick", "other-suite") in forced.provenance_diffs


def test_unknown_run(store):
    with pytest.raises(errors.TestbedError, match="no run 'nope'"):
        compare_runs(store, "A", "nope")
