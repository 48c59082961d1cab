"""Change points in nightly series and the tests that confirm them (fast, no root, synthetic data)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from orchestrator.errors import ConfigError
from orchestrator.results.changepoint import (DetectorConfig, breakpoints, change_points, classify, decisive_p,
                                              describe_test, latest_change, within_se)

CFG = DetectorConfig()


def nights(levels, cv=0.02, drift=0.01, reps=5, seed=0):
    rng = np.random.default_rng(seed)
    raw = [list(lv * (1 + drift * rng.standard_normal()) * (1 + cv * rng.standard_normal(reps))) for lv in levels]
    return [float(np.median(r)) for r in raw], raw


def test_a_step_is_found_where_it_is_and_a_lone_spike_is_not_a_change_point():
    medians, raw = nights([100.0] * 10 + [130.0] * 6)
    y = np.log(medians)
    assert breakpoints(y, within_se(raw), CFG) == [10]
    spiky, raw = nights([100.0] * 8 + [150.0] + [100.0] * 7)
    assert breakpoints(np.log(spiky), within_se(raw), CFG) == []  # min segment: 2 nights


@pytest.mark.parametrize("method", ["pelt", "binseg"])
def test_both_ruptures_methods_segment_the_same_clean_step(method):
    medians, raw = nights([100.0] * 8 + [70.0] * 8, seed=3)
    assert breakpoints(np.log(medians), within_se(raw), DetectorConfig(method=method)) == [8]


def test_tonight_30_percent_worse_is_a_change_that_starts_tonight():
    medians, raw = nights([20.0] * 9 + [26.0])
    c = latest_change(medians, raw, CFG)
    assert c is not None and c.first_night == 9 and c.after.nights == 1
    assert c.rel_change == pytest.approx(0.30, abs=0.05)
    assert c.ci[0] < c.rel_change < c.ci[1]
    assert decisive_p(c, "both") < 0.001
    assert classify(c, decisive_p(c, "both"), CFG.alpha, 0.05, "lower") == "regression"


def test_a_change_that_persists_names_its_first_night():
    medians, raw = nights([20.0] * 10 + [26.0] * 5)
    c = latest_change(medians, raw, CFG)
    assert c is not None and c.first_night == 10 and c.after.nights == 5
    assert "Bonferroni" in describe_test(c, "both")


def test_yesterdays_change_seen_tonight_names_yesterday():
    medians, raw = nights([20.0] * 10 + [26.0] * 2)
    c = latest_change(medians, raw, CFG)
    assert c is not None and c.first_night == 10


def test_nights_within_noise_are_not_flagged():
    for seed in range(20):
        medians, raw = nights([100.0] * 12, seed=seed)
        c = latest_change(medians, raw, CFG)
        p = decisive_p(c, CFG.confirm) if c else 1.0
        assert classify(c, p, CFG.alpha, 0.05, "lower") == "ok", seed


def test_tonight_back_to_normal_after_an_odd_night_is_not_a_change():
    medians, raw = nights([100.0] * 10 + [140.0, 100.0])
    c = latest_change(medians, raw, CFG)
    assert c is None or classify(c, decisive_p(c, CFG.confirm), CFG.alpha, 0.05, "lower") == "ok"


def test_raw_samples_alone_mistake_between_night_drift_for_a_change():
    # Within-run noise 0.5%, drift ~4.5%: every night differs "significantly" on its raw samples.
    medians, raw = nights([100.0] * 9 + [107.0], cv=0.005, drift=0.0)
    drift = [1.06, 0.955, 1.03, 0.94, 1.045, 0.97, 1.065, 0.93, 1.0]
    medians[:-1] = [m * f for m, f in zip(medians[:-1], drift)]
    raw = [[x * m / np.median(r) for x in r] for r, m in zip(raw, medians)]
    c = latest_change(medians, raw, DetectorConfig(confirm="raw"))
    assert c is not None and c.p_raw < 0.01          # the U test on raw samples says "changed"
    assert c.p_nights > 0.1                           # the nightly medians say it is within drift
    assert decisive_p(c, "both") > 0.1


def test_identical_nights_are_not_infinitely_precise():
    # Every night the same median: the floor (within-run SE of a median) keeps a 1% change ordinary.
    raw = [[99.0, 100.0, 101.0, 97.0, 103.0]] * 9 + [[100.0, 101.0, 102.0, 98.0, 104.0]]
    medians = [float(np.median(r)) for r in raw]
    c = latest_change(medians, raw, DetectorConfig(confirm="nights"))
    assert c is not None and c.p_nights > 0.01
    assert within_se(raw) == pytest.approx(math.sqrt(5 / 4 * 0.0004) * math.sqrt(math.pi / 2) / math.sqrt(5), rel=0.1)


def test_direction_comes_from_the_unit():
    medians, raw = nights([100.0] * 9 + [130.0])
    c = latest_change(medians, raw, CFG)
    p = decisive_p(c, CFG.confirm)
    assert classify(c, p, 0.02, 0.05, "lower") == "regression"      # a time got longer
    assert classify(c, p, 0.02, 0.05, "higher") == "improvement"    # a throughput got higher
    assert classify(c, p, 0.02, 0.05, None) == "change"             # a count: no verdict
    assert classify(c, p, 0.02, 0.50, "lower") == "ok"              # below the magnitude threshold
    assert classify(c, 0.5, 0.02, 0.05, "lower") == "ok"            # not significant


def test_history_change_points_are_tested_each():
    medians, raw = nights([100.0] * 8 + [130.0] * 8 + [100.0] * 8)
    cps = change_points(medians, raw, CFG)
    assert [c.first_night for c in cps] == [8, 16]
    assert cps[0].rel_change > 0.2 and cps[1].rel_change < -0.2


def test_non_positive_medians_are_not_analysed_and_bad_options_are_config_errors():
    assert latest_change([0.0, 1.0, 2.0, 3.0, 4.0], [[0.0], [1.0], [2.0], [3.0], [4.0]], CFG) is None
    medians, raw = nights([100.0] * 10)
    with pytest.raises(ConfigError, match="detector method"):
        latest_change(medians, raw, DetectorConfig(method="nope"))
    c = latest_change(*nights([100.0] * 9 + [150.0]), CFG)
    with pytest.raises(ConfigError, match="confirm mode"):
        decisive_p(c, "either")
