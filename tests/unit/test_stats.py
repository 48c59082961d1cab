"""Statistics: intervals that respect the quantity, honest tails, tests that say what decided."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.results.stats import (MIN_N_INTERVAL, NO_INTERVAL_SMALL_N, NO_INTERVAL_ZERO_SPREAD, benjamini_hochberg,
                                        direction, holm, mann_whitney_p, median_ci, min_n_for_exact_test, rank,
                                        ratio_ci, repetitions_needed, summarize)


def test_median_ci_brackets_the_median_and_is_deterministic():
    values = [10.0, 11.0, 9.5, 10.5, 10.2, 30.0]
    lo, hi = median_ci(values)
    assert lo <= float(np.median(values)) <= hi
    assert min(values) <= lo and hi <= max(values)  # a percentile bootstrap of the median stays in range
    assert median_ci(values) == (lo, hi)  # seeded
    assert median_ci(values[:MIN_N_INTERVAL - 1]) is None


def test_small_n_has_no_interval_and_says_so():
    # The issue's `runc nginx -16,315–41,537 req/s`: a t-interval on three values. Now: no interval.
    s = summarize([1200.0, 41000.0, 12000.0])
    assert s.ci_low is None and s.ci_high is None and s.ci_reason == NO_INTERVAL_SMALL_N
    assert s.median == 12000.0 and s.n == 3


def test_tails_are_named_by_what_n_supports():
    s = summarize([float(i) for i in range(1, 4)])
    assert s.p95 is None and s.tail() == ("max", 3.0)  # "the p95 of n=3 is the maximum": call it max
    s20 = summarize([float(i) for i in range(1, 21)])
    assert s20.p95 is not None and s20.tail()[0] == "p95" and s20.p99 is None
    s100 = summarize([float(i) for i in range(1, 101)])
    assert s100.tail()[0] == "p99"


def test_zero_spread_has_no_interval():
    s = summarize([107143.0] * 5)
    assert s.ci_low is None and s.ci_reason == NO_INTERVAL_ZERO_SPREAD and s.cv == 0.0


def test_empty_and_failed():
    s = summarize([], failed=2)
    assert s.n == 0 and s.failed == 2 and s.median is None and s.tail() == ("max", None)


positive = st.floats(min_value=1e-9, max_value=1e12, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(positive, min_size=1, max_size=40))
def test_no_interval_on_positive_data_has_a_negative_bound(values):
    s = summarize(values)
    if s.ci_low is not None:
        assert s.ci_low >= 0 and s.ci_high >= s.ci_low
        assert min(values) <= s.ci_low and s.ci_high <= max(values)


@settings(max_examples=100, deadline=None)
@given(st.lists(positive, min_size=1, max_size=20), st.lists(positive, min_size=1, max_size=20))
def test_ratio_interval_on_positive_data_is_positive(a, b):
    r = ratio_ci(a, b)
    assert r is not None and r.point > 0
    if r.low is not None:
        assert 0 < r.low <= r.high


def test_ratio_ci_of_a_clear_difference_excludes_one():
    r = ratio_ci([200.0, 205, 198, 202, 201], [100.0, 101, 99, 102, 100])
    assert r.point == pytest.approx(2.0, rel=0.02) and r.excludes_one() and r.low > 1.8
    assert ratio_ci([0.0, 1.0], [1.0, 2.0]) is None  # a ratio around zero means nothing
    small = ratio_ci([2.0, 2.1], [1.0, 1.1])
    assert small.low is None and small.point == pytest.approx(2.05 / 1.05)


def test_mann_whitney_exact_and_with_ties():
    a, b = [1.0, 2, 3, 4, 5], [6.0, 7, 8, 9, 10]
    assert mann_whitney_p(a, b) == pytest.approx(2 / 252)  # complete separation of 5 vs 5, exact
    # quantized values (ties): the permutation distribution, not the anti-conservative normal formula
    assert mann_whitney_p([107143.0] * 5, [90000.0, 90000, 91000, 90000, 92000]) == pytest.approx(2 / 252)
    assert mann_whitney_p([5.0] * 4, [5.0] * 4) == 1.0
    assert mann_whitney_p([1.0], [2.0, 3.0]) is None


def test_corrections():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert benjamini_hochberg([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.04, 0.04])
    assert benjamini_hochberg([]) == []


def test_repetitions_needed():
    a = [100.0, 104, 96, 102, 98]
    assert repetitions_needed(a, a) is None  # nothing to resolve
    near = repetitions_needed(a, [101.0, 105, 97, 103, 99])
    far = repetitions_needed(a, [110.0, 114, 106, 112, 108])
    assert near > far >= min_n_for_exact_test(0.05)
    assert min_n_for_exact_test(0.05) == 4 and min_n_for_exact_test(0.05 / 6) == 5


def test_disjoint_platforms_are_ranked_despite_wide_spread():
    # The uKontainer ordering, CVs well above 10%: the intervals are disjoint, so it is a ranking.
    values = {"native": [27.9, 22.0, 35.0, 30.1, 25.2], "runc": [67.8, 50.0, 90.0, 60.2, 75.5],
              "gvisor": [730.0, 600.0, 900.0, 650.0, 800.0], "vm": [5545.0, 4000.0, 7000.0, 5000.0, 6500.0]}
    r = rank(values, "lower")
    assert r.order == ["native", "runc", "gvisor", "vm"] and r.complete
    assert all(t.p == pytest.approx(2 / 252) for t in r.pairs)
    assert all(t.correction == "Holm over 6 pairs" and t.test.startswith("Mann-Whitney") for t in r.pairs)
    assert summarize(values["runc"]).wide  # wide, and still ranked


def test_inconclusive_ranking_says_how_many_repetitions():
    r = rank({"a": [100.0, 104, 96, 102, 98], "b": [101.0, 105, 97, 103, 99]}, "higher")
    (t,) = r.pairs
    assert not t.significant and not r.complete
    assert t.repetitions_needed is not None and t.repetitions_needed > 5
    assert rank({"a": [1.0, 2.0]}, "higher") is None


def test_direction():
    assert direction("req/s") == "higher" and direction("us") == "lower" and direction("count") is None
    assert math.isclose(summarize([100.0, 102.0, 98.0]).cv, 0.02)
