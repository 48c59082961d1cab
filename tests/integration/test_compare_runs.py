"""`testbed compare` on real runs: a CPU hog pinned to the server's CPU is a significant slowdown;
two quiet runs show no significant change on most metrics.

Each run is a real `testbed run` (native redis: cold starts and redis-benchmark SET lasting about a
second per repetition) into a temporary store, on this helper's lab subnet.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import leftovers, run_cli

from orchestrator.placement import split_cpus

pytestmark = pytest.mark.slow

SUITE = """\
name: compare-hog
repetitions: 6
lab: {subnet: 10.91.0.0/24}
platforms:
  native: {}
workloads:
  redis: {}
benchmarks:
  cold-start: {kind: startup, repetitions: 5}
  set: {kind: redis-benchmark, tests: [set], requests: [40000], clients: [50], warmup: 1}
"""
HOG_SECONDS = 120  # each hog ends by itself even if this test is killed


def run_suite(suite: Path, store: Path) -> str:
    res = run_cli("run", str(suite), "--store", str(store), timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    m = re.search(r"run ([0-9a-f]{6,}): \d+ samples", res.stdout)
    assert m, res.stdout[-2000:]
    assert leftovers(m.group(1)) == []
    return m.group(1)


@contextmanager
def cpu_hogs(cpu: int, count: int = 2):
    """Busy loops pinned to one CPU, bounded in time, killed on the way out."""
    hogs = [subprocess.Popen(["taskset", "-c", str(cpu), "timeout", str(HOG_SECONDS), "sh", "-c", "while :; do :; done"],
                             start_new_session=True) for _ in range(count)]
    try:
        time.sleep(0.5)
        assert all(h.poll() is None for h in hogs)
        yield hogs
    finally:
        for h in hogs:
            try:
                os.killpg(h.pid, 9)
            except ProcessLookupError:
                pass
            h.wait(timeout=10)


def compare(store: Path, a: str, b: str) -> dict:
    res = run_cli("compare", a, b, "--store", str(store), "--format", "json")
    assert res.returncode == 0, res.stderr
    table = run_cli("compare", a, b, "--store", str(store))
    assert "provenance differences" in table.stdout and "verdicts:" in table.stdout
    print(table.stdout)
    return json.loads(res.stdout)


def row(data: dict, metric: str) -> dict:
    return next(r for r in data["rows"] if r["metric"] == metric and r["platform"] == "native"
                and r["benchmark"] == ("set" if metric != "startup_ms" else "cold-start"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("compare")
    suite = d / "compare-hog.yaml"
    suite.write_text(SUITE)
    store = d / "r.sqlite"
    server_cpus, _ = split_cpus(os.cpu_count() or 1)
    if not server_cpus:
        pytest.skip("needs two CPUs: the server and the load generator are pinned apart")
    quiet_a = run_suite(suite, store)
    quiet_b = run_suite(suite, store)
    with cpu_hogs(server_cpus[0]):
        hogged = run_suite(suite, store)
    return store, quiet_a, quiet_b, hogged


def test_a_cpu_hog_on_the_server_cpu_is_a_significant_slowdown(runs):
    store, quiet_a, _, hogged = runs
    data = compare(store, quiet_a, hogged)
    rps = row(data, "requests_per_s")
    assert rps["verdict"] == "slower", rps
    assert rps["p_adjusted"] < 0.05 and rps["change_pct"] < -20 and rps["ci_high_pct"] < 0, rps


def test_two_quiet_runs_show_no_significant_change_on_most_metrics(runs):
    store, quiet_a, quiet_b, _ = runs
    data = compare(store, quiet_a, quiet_b)
    verdicts = [r["verdict"] for r in data["rows"] if r["verdict"] != "not comparable"]
    same = verdicts.count("no significant change")
    assert same > len(verdicts) / 2, verdicts
