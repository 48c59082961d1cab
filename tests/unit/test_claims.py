"""Claim verdicts on synthetic data: every kind, every verdict, the numbers and the test that decided."""

from __future__ import annotations

import pytest
from results_data import BASE

from orchestrator.config.papers import ClaimModel, PaperModel, PublishedModel
from orchestrator.results import claims as C
from orchestrator.results.store import SampleRow

PAPER = PaperModel(title="T", venue="V", year=2020, figure="Figure 3")


def rows(platform: str, metric: str, values, *, unit: str = "ms", params: dict | None = None, status: str = "ok",
         reason: str | None = None, prov: dict | None = None) -> list[SampleRow]:
    return [SampleRow(0, "r", 0.0, platform, "w", "b", metric, v, unit, i, dict(params or {}), status, reason,
                      {"benchmark_kind": "b", "platform_kind": platform, **(prov or {})})
            for i, v in enumerate(values)]


def scaled(f: float, n: int = 6) -> list[float]:
    return [v * f for v in (BASE * 3)[:n]]


class Suite:
    def __init__(self, *claims: dict, published: dict | None = None):
        self.paper = PAPER
        self.published = PublishedModel(**published) if published else None
        self.claims = [ClaimModel(**c) for c in claims]


def verdict(claim: dict, data: list[SampleRow], published: dict | None = None) -> C.Verdict:
    return C.evaluate_claims(Suite(claim, published=published), data)[0]


RATIO = {"id": "r", "kind": "ratio", "statement": "gvisor at least 2x runc", "metric": "startup_ms",
         "platform": "gvisor", "baseline": "runc", "at_least": 2.0}


def test_ratio_reproduced_names_numbers_and_test():
    v = verdict(RATIO, rows("gvisor", "startup_ms", scaled(5)) + rows("runc", "startup_ms", scaled(1)))
    assert v.verdict == C.REPRODUCED
    assert "gvisor/runc = 5.00x, 95% CI [" in v.detail and ">= 2" in v.detail and "n 6/6" in v.detail
    assert v.test == C.RATIO_TEST and v.source == "Figure 3"
    assert v.points[0].numbers["ratio"]["low"] > 2


def test_ratio_not_reproduced_when_the_whole_interval_is_below():
    v = verdict(RATIO, rows("gvisor", "startup_ms", scaled(1.2)) + rows("runc", "startup_ms", scaled(1)))
    assert v.verdict == C.NOT_REPRODUCED and "1.20x" in v.detail


def test_ratio_inconclusive_says_how_many_repetitions_would_decide():
    noisy_a = [190.0, 260.0, 150.0, 240.0, 210.0, 170.0]
    noisy_b = [100.0, 95.0, 105.0, 110.0, 90.0, 100.0]
    v = verdict(RATIO, rows("gvisor", "startup_ms", noisy_a) + rows("runc", "startup_ms", noisy_b))
    assert v.verdict == C.INCONCLUSIVE
    assert v.repetitions and v.repetitions > 6
    assert f"about {v.repetitions} repetitions per platform would decide it" in v.detail


def test_ratio_with_n_below_five_is_inconclusive_with_the_n_that_gives_an_interval():
    v = verdict(RATIO, rows("gvisor", "startup_ms", scaled(5, 3)) + rows("runc", "startup_ms", scaled(1, 3)))
    assert v.verdict == C.INCONCLUSIVE and v.repetitions == 5 and "no interval" in v.detail


def test_at_most_bound():
    claim = {**RATIO, "at_least": None, "at_most": 1.5}
    ok = verdict(claim, rows("gvisor", "startup_ms", scaled(1.1)) + rows("runc", "startup_ms", scaled(1)))
    bad = verdict(claim, rows("gvisor", "startup_ms", scaled(3)) + rows("runc", "startup_ms", scaled(1)))
    assert ok.verdict == C.REPRODUCED and bad.verdict == C.NOT_REPRODUCED


CLOSE = {"id": "c", "kind": "close", "statement": "runc within 10% of native", "metric": "ns_per_call",
         "platform": "runc", "baseline": "native", "within_pct": 10}


@pytest.mark.parametrize("factor, expected", [(1.02, C.REPRODUCED), (1.5, C.NOT_REPRODUCED), (0.6, C.NOT_REPRODUCED)])
def test_close(factor, expected):
    v = verdict(CLOSE, rows("runc", "ns_per_call", scaled(factor), unit="ns") +
                rows("native", "ns_per_call", scaled(1), unit="ns"))
    assert v.verdict == expected, v.detail
    assert "within 10% of 1" in v.detail


def test_close_inconclusive_when_the_interval_crosses_the_band():
    a = [100.0, 125.0, 95.0, 118.0, 104.0, 112.0]
    b = [100.0, 101.0, 99.0, 100.5, 99.5, 100.2]
    v = verdict(CLOSE, rows("runc", "ns_per_call", a, unit="ns") + rows("native", "ns_per_call", b, unit="ns"))
    assert v.verdict == C.INCONCLUSIVE and v.repetitions


ORDER = {"id": "o", "kind": "order", "statement": "native < runc < vm", "metric": "startup_ms",
         "increasing": ["native", "runc", "vm"]}


def test_order_reproduced_with_every_neighbour_separated():
    data = rows("native", "startup_ms", scaled(1)) + rows("runc", "startup_ms", scaled(3)) + \
        rows("vm", "startup_ms", scaled(30))
    v = verdict(ORDER, data)
    assert v.verdict == C.REPRODUCED, v.detail
    assert v.test == C.ORDER_TEST
    assert v.detail == "native 100.1 < runc 300.3 (Holm p 0.006); runc 300.3 < vm 3,003 (Holm p 0.006) ms"
    assert [p["significant"] for p in v.points[0].numbers["pairs"]] == [True, True]


def test_order_not_reproduced_when_a_neighbour_is_significantly_reversed():
    data = rows("native", "startup_ms", scaled(1)) + rows("runc", "startup_ms", scaled(40)) + \
        rows("vm", "startup_ms", scaled(30))
    v = verdict(ORDER, data)
    assert v.verdict == C.NOT_REPRODUCED and "opposite order for runc/vm" in v.detail


def test_order_inconclusive_with_repetitions_when_neighbours_overlap():
    data = rows("native", "startup_ms", scaled(1, 3)) + rows("runc", "startup_ms", scaled(1.05, 3)) + \
        rows("vm", "startup_ms", scaled(30, 3))
    v = verdict(ORDER, data)
    assert v.verdict == C.INCONCLUSIVE and v.repetitions and "would resolve" in v.detail


def test_decreasing_order_for_throughput():
    claim = {**ORDER, "increasing": None, "decreasing": ["osv", "vm"], "metric": "ops_per_s"}
    data = rows("osv", "ops_per_s", scaled(1.2), unit="ops/s") + rows("vm", "ops_per_s", scaled(1), unit="ops/s")
    assert verdict(claim, data).verdict == C.REPRODUCED


def test_not_comparable_under_tcg_says_why():
    tcg = {"accel": "tcg", "accel_reason": "KVM present but unusable"}
    data = rows("native", "startup_ms", scaled(1)) + rows("runc", "startup_ms", scaled(3)) + \
        rows("vm", "startup_ms", scaled(30), prov=tcg)
    v = verdict(ORDER, data)
    assert v.verdict == C.NOT_COMPARABLE
    assert v.reason.startswith("TCG instead of KVM: emulation, not the paper's setup (vm ran under TCG")


def test_not_comparable_when_an_image_is_missing():
    data = rows("native", "startup_ms", scaled(1)) + rows("runc", "startup_ms", scaled(3)) + \
        rows("vm", "cell", [None], unit="-", status="not_runnable",
             reason="no osv image named redis; testbed images import osv DIR --name redis")
    v = verdict(ORDER, data)
    assert v.verdict == C.NOT_COMPARABLE and "vm not runnable here: no osv image named redis" in v.reason


def test_not_comparable_when_a_platform_was_not_measured_or_failed():
    data = rows("native", "startup_ms", scaled(1)) + rows("runc", "startup_ms", [None] * 3, status="failed",
                                                          reason="runc exited 1")
    v = verdict(ORDER, data)
    assert v.verdict == C.NOT_COMPARABLE
    assert "runc has no successful sample of startup_ms (runc exited 1)" in v.reason
    assert "vm was not measured in this run" in v.reason


def test_sriov_requirement_is_a_different_hardware_class():
    claim = {**CLOSE, "requires": ["sriov"]}
    data = rows("runc", "ns_per_call", scaled(1), unit="ns", prov={"nic": "veth"}) + \
        rows("native", "ns_per_call", scaled(1), unit="ns", prov={"nic": "veth"})
    v = verdict(claim, data, published={"source": "T1", "hardware": "x", "nic": "Intel 82599 (SR-IOV)"})
    assert v.verdict == C.NOT_COMPARABLE and "the paper used Intel 82599 (SR-IOV); here runc (veth)" in v.reason


def test_sweep_claims_judge_every_point_and_a_point_filter_selects():
    data = []
    for c, f in ((1, 5.0), (10, 5.0), (60, 1.1)):
        data += rows("gvisor", "startup_ms", scaled(f), params={"connections": c})
        data += rows("runc", "startup_ms", scaled(1), params={"connections": c})
    v = verdict(RATIO, data)
    assert v.verdict == C.NOT_REPRODUCED and v.detail.startswith("1 of 3 points contradict it: [connections=60]")
    only = verdict({**RATIO, "point": {"connections": 10}}, data)
    assert only.verdict == C.REPRODUCED and len(only.points) == 1
    none = verdict({**RATIO, "point": {"connections": 99}}, data)
    assert none.verdict == C.NOT_COMPARABLE and "no samples of startup_ms at connections=99" in none.reason


def test_a_baseline_point_compares_two_points_of_one_platform():
    data = []
    for platform, tmp, host in (("gvisor", 1.0, 3.0), ("runc", 1.0, 1.02)):
        data += rows(platform, "ns_per_call", scaled(tmp), unit="ns", params={"test": "openclose_tmp"})
        data += rows(platform, "ns_per_call", scaled(host), unit="ns", params={"test": "openclose_host-tmpfs"})
    claim = {"id": "ext", "kind": "ratio", "statement": "the gofer makes host tmpfs slower", "metric": "ns_per_call",
             "platform": "gvisor", "baseline": "gvisor", "point": {"test": "openclose_host-tmpfs"},
             "baseline_point": {"test": "openclose_tmp"}, "at_least": 2}
    v = verdict(claim, data)
    assert v.verdict == C.REPRODUCED, v.detail
    assert v.detail.startswith("gvisor[test=openclose_host-tmpfs]/gvisor[test=openclose_tmp] = 3.00x")
    assert "= +200.2 ns" in v.detail  # the difference, in the metric's unit
    same = verdict({**claim, "kind": "close", "at_least": None, "within_pct": 10, "platform": "runc",
                    "baseline": "runc"}, data)
    assert same.verdict == C.REPRODUCED, same.detail


def test_point_filter_matches_file_sizes_by_value():
    data = rows("gvisor", "startup_ms", scaled(5), params={"file": "4k.bin"}) + \
        rows("runc", "startup_ms", scaled(1), params={"file": "4k.bin"})
    assert verdict({**RATIO, "point": {"file": "4k"}}, data).verdict == C.REPRODUCED


def test_published_rows_convert_units_and_give_ratios_to_the_baseline():
    published = {"source": "Table 1", "hardware": "Xeon", "accel": "none", "baseline": "Linux", "values": [
        {"system": "Linux", "value": 3.36, "unit": "us",
         "ours": {"platform": "native", "metric": "latency_p50_us"}},
        {"system": "Arrakis/P", "value": 1.44, "unit": "us"},
        {"system": "gVisor", "value": 4000, "unit": "ns", "ours": {"platform": "gvisor", "metric": "latency_p50_us"}},
    ]}
    data = rows("native", "latency_p50_us", scaled(0.5), unit="us") + \
        rows("gvisor", "latency_p50_us", scaled(1.0), unit="us")
    from orchestrator.results.summary import summarize_rows

    out = C.published_rows(PublishedModel(**published), summarize_rows(data))
    linux, arrakis, gvisor = out
    assert linux.published_ratio == 1 and abs(arrakis.published_ratio - 1.44 / 3.36) < 1e-9
    assert abs(linux.ours - 50.05) < 0.1 and linux.ours_unit == "us" and linux.ours_ratio == 1
    assert gvisor.ours_unit == "ns" and abs(gvisor.ours - 100100) < 200 and abs(gvisor.ours_ratio - 2) < 0.01
    assert arrakis.ours is None


def test_verdict_counts():
    counts = C.verdict_counts([C.Verdict("a", "ratio", "", C.REPRODUCED, "", "", "", "m", [])])
    assert counts == {C.REPRODUCED: 1, C.NOT_REPRODUCED: 0, C.INCONCLUSIVE: 0, C.NOT_COMPARABLE: 0}
