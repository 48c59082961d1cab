from __future__ import annotations

import math
import sqlite3

import pytest

from orchestrator.bench.redis_benchmark import parse_csv
from orchestrator import errors
from orchestrator.results.export import export_samples, export_summary
from orchestrator.results.stats import summarize
from orchestrator.results.store import Store
from orchestrator.results.summary import summarize_rows, summary_records

PROV = {"host": {"cpu_model": "x"}, "testbed_rev": "abc", "suite_hash": "h", "image_digest": "d"}


def test_store_commits_each_sample_and_exports(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    store.begin_run("r1", "s", "s.yaml", "h", "abc", {"server": {}})
    for i, v in enumerate([10.0, 12.0, 11.0]):
        store.add_sample("r1", platform="native", workload="redis", benchmark="b", metric="startup_ms", value=v,
                         unit="ms", repetition=i, params={}, status="ok", reason=None, provenance=PROV)
    store.add_sample("r1", platform="gvisor", workload="redis", benchmark="b", metric="startup_ms", value=None,
                     unit="ms", repetition=0, params={}, status="failed", reason="timeout", provenance=PROV)
    # Another connection sees the rows at once: nothing waits for the end of the run.
    other = sqlite3.connect(tmp_path / "r.sqlite")
    assert other.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 4
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    rows = {r["platform"]: r for r in summary_records(summarize_rows(list(store.samples("r1"))))}
    assert rows["native"]["median"] == 11.0 and rows["native"]["n"] == 3
    assert rows["gvisor"]["n"] == 0 and rows["gvisor"]["failed"] == 1 and rows["gvisor"]["failures"] == ["timeout"]
    assert '"provenance"' in export_samples(store, "r1", "json")
    assert export_samples(store, "r1", "csv").splitlines()[0].startswith("id,run_id,measured,platform")
    summary_csv = export_summary(store, "r1", "csv").splitlines()
    assert summary_csv[0].startswith("workload,benchmark,metric,unit,point,platform") and len(summary_csv) == 3
    assert '"ci_reason": "n too small for an interval"' in export_summary(store, "r1", "json")


def test_open_existing_refuses_a_missing_file(tmp_path):
    with pytest.raises(errors.TestbedError, match="does not exist") as exc:
        Store.open_existing(tmp_path / "nope.sqlite")
    assert "\n" not in str(exc.value) and not (tmp_path / "nope.sqlite").exists()


def test_store_refuses_samples_without_provenance(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    store.begin_run("r1", "s", "s.yaml", "h", "abc", {})
    with pytest.raises(ValueError, match="image_digest"):
        store.add_sample("r1", platform="p", workload="w", benchmark="b", metric="m", value=1.0, unit="ms",
                         repetition=0, params={}, status="ok", reason=None,
                         provenance={k: v for k, v in PROV.items() if k != "image_digest"})


def test_summary_statistics():
    s = summarize([10.0, 12.0, 11.0, 13.0, 9.0])
    assert s.median == 11.0 and s.mean == 11.0
    assert math.isclose(s.sd, math.sqrt(2.5))
    assert 9.0 <= s.ci_low <= 11.0 <= s.ci_high <= 13.0  # bootstrap CI of the median, inside the data
    assert summarize([100.0, 150.0]).wide and not summarize([100.0, 101.0]).wide
    assert summarize([], failed=2).n == 0


REDIS_CSV = '''"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"SET","62500.00","0.094","0.024","0.079","0.199","0.295","0.991"
"GET","74074.07","0.075","0.024","0.079","0.095","0.135","0.287"
'''


def test_redis_benchmark_csv_parser():
    rows = parse_csv(REDIS_CSV)
    assert rows["SET"]["rps"] == 62500.0 and rows["GET"]["p99_latency_ms"] == 0.135
    with pytest.raises(ValueError):
        parse_csv("ERROR: connection refused")
    with pytest.raises(ValueError, match="truncated"):
        parse_csv(REDIS_CSV.rsplit(",", 2)[0])
