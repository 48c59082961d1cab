"""`testbed claims`, the report's paper section and `run --check` on synthetic stores and suites."""

from __future__ import annotations

import json

import pytest
from helpers import run_cli
from results_data import add, open_store, scaled

from orchestrator.config.papers import paper_provenance
from orchestrator.plan import load_plan

SUITE = """\
name: paper-t
repetitions: 6
lab: {subnet: 10.106.0.0/24}
paper: {title: The Paper, venue: OSDI, year: 2014, table: Table 1, url: "https://example.org/p"}
published:
  source: Table 1
  hardware: Xeon, 82599
  accel: kvm
  baseline: Linux
  values:
    - {system: Linux, value: 3.36, unit: us, ours: {platform: native, metric: latency_p50_us}}
    - {system: Fast, value: 1.44, unit: us}
platforms: {native: {}, runc: {}, vm: {kind: linux-vm}}
workloads: {netserver: {}}
benchmarks: {rr: {kind: netperf, tests: [UDP_RR], message_sizes: [64], length: 1}}
claims:
  - {id: runc-close, kind: close, statement: runc as native, metric: latency_p50_us, platform: runc,
     baseline: native, within_pct: 25}
  - {id: vm-slower, kind: ratio, statement: a VM adds latency, metric: latency_p50_us, platform: vm,
     baseline: native, at_least: 1.2}
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    d = tmp_path_factory.mktemp("claims")
    suite = d / "paper-t.yaml"
    suite.write_text(SUITE)
    plan = load_plan(suite)
    s = open_store(d / "r.sqlite")
    s.begin_run("P1", plan.name, str(suite), plan.digest, "abc",
                {"server": {"hostname": "labhost", "cpu_model": "AMD EPYC", "cores": 2}, **plan.run_provenance()})
    s.end_run("P1", "ok")
    params = {"test": "UDP_RR", "message_size": 64, "length_s": 1}
    add(s, "P1", "native", "latency_p50_us", scaled(0.5), unit="us", workload="netserver", benchmark="rr",
        kind="netperf", params=params)
    add(s, "P1", "runc", "latency_p50_us", scaled(0.51), unit="us", workload="netserver", benchmark="rr",
        kind="netperf", params=params)
    add(s, "P1", "vm", "latency_p50_us", scaled(2.0), unit="us", workload="netserver", benchmark="rr",
        kind="netperf", params=params, extra_prov={"accel": "tcg", "accel_reason": "KVM unusable"})
    s.begin_run("Q1", "quick", "quick.yaml", "h", "abc", {"server": {"hostname": "labhost"}})
    s.end_run("Q1", "ok")
    s.close()
    return d / "r.sqlite"


def test_claims_table_gives_every_claim_a_verdict_and_the_test(store, tb):
    res = tb("claims", "P1", "--store", str(store))
    out = res.stdout
    assert res.returncode == 0, res.stderr
    assert "runc-close" in out and "reproduced" in out and "runc/native = 1.02x" in out
    assert "vm-slower" in out and "not comparable" in out and "TCG instead of KVM" in out
    assert "1 reproduced, 0 not reproduced, 0 inconclusive, 1 not comparable" in out
    assert "close: ratio of medians with its 95% percentile-bootstrap CI" in out
    assert "published beside measured" in out and "0.429x" in out and "50.05 us (native, n=6)" in out


def test_claims_json(store, tb):
    d = json.loads(tb("claims", "P1", "--store", str(store), "--format", "json").stdout)
    assert [v["verdict"] for v in d["verdicts"]] == ["reproduced", "not comparable"]
    assert d["verdicts"][0]["points"][0]["numbers"]["ratio"]["low"] > 0.75
    assert d["counts"]["not comparable"] == 1 and d["published"][1]["published_ratio"] == pytest.approx(1.44 / 3.36)
    assert d["paper"]["table"] == "Table 1"


def test_claims_of_a_run_without_claims_is_one_line(store, tb):
    res = tb("claims", "Q1", "--store", str(store))
    assert res.returncode != 0 and res.stderr.strip().splitlines() == [
        "testbed: error: run Q1 recorded no claims and its suite file quick.yaml is gone"]


def test_report_paper_section_shows_verdicts_published_ratios_figures_and_the_tcg_caveat(store, tb, tmp_path):
    out = tmp_path / "r.html"
    res = tb("report", "P1", "Q1", "--store", str(store), "-o", str(out))
    assert res.returncode == 0, res.stderr
    html = out.read_text()
    section = html[html.index('id="paper-section-P1"'):html.index('id="provenance-P1"')]
    assert "The Paper (OSDI 2014), Table 1" in section and 'href="https://example.org/p"' in section
    assert "Caveat:</strong> TCG instead of KVM: emulation, not the paper&#39;s setup: vm ran under TCG" in section
    assert 'class="verdict-reproduced">reproduced' in section and 'class="verdict-not-comparable">not comparable' \
        in section
    assert "ratio to the paper's baseline" in section and "0.429x" in section
    assert section.count("<svg") == 3  # published ratios + one figure per claim
    assert "here: labhost, AMD EPYC, 2 cores" in section
    q = html[html.index('id="run-Q1"'):]
    assert "declares no claims and no published numbers" in q


def test_paper_provenance_is_empty_for_an_ordinary_suite():
    assert paper_provenance(None, None, []) == {}


def test_run_check_prints_matrix_samples_estimate_and_refuses_what_cannot_run(tmp_path):
    ok = tmp_path / "ok.yaml"
    ok.write_text("name: c\nrepetitions: 2\nlab: {subnet: 10.106.0.0/24}\nplatforms: {native: {}, osv: {}}\n"
                  "workloads: {redis: {}}\nbenchmarks: {boot: {kind: startup}, sg: {kind: redis-benchmark}}\n")
    res = run_cli("run", "--check", str(ok), timeout=120)
    assert res.returncode == 0, res.stderr
    assert "4 cells" in res.stdout and "kept runs" in res.stdout
    assert "8 kept launches or tool runs, about" in res.stdout
    assert "not runnable here: osv/redis/boot: no osv image named 'redis'" in res.stdout
    assert "checks passed; estimated duration:" in res.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: c\nlab: {subnet: 10.106.0.0/24}\nplatforms: {gvisor: {platform: systrap}}\n"
                   "workloads: {redis: {}}\nbenchmarks: {boot: {kind: startup}}\n")
    res = run_cli("run", "--check", str(bad), timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [
        f"testbed: error: {bad}: platforms.gvisor: platform: this runsc (0.0~20221219.0) has no systrap platform; "
        f"it has kvm, ptrace"]
