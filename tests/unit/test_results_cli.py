"""`testbed results`, `compare` and `report` from the command line: tables that never cut a number,
exports, and one clear line with a non-zero exit for bad input."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from helpers import run_cli
from results_data import compare_store


from orchestrator.results.summary import summarize_rows
from orchestrator.results.numbers import fmt


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "r.sqlite"
    compare_store(path).close()
    return path


def one_line_error(res) -> str:
    assert res.returncode != 0, res.stdout
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("testbed: error: "), res.stderr
    assert "Traceback" not in res.stderr
    return lines[0]


def test_results_of_a_missing_store_file(tmp_path):
    line = one_line_error(run_cli("results", "--store", str(tmp_path / "missing.sqlite")))
    assert "missing.sqlite" in line and "does not exist" in line
    assert not (tmp_path / "missing.sqlite").exists()  # reading never creates a store


def test_report_and_compare_of_an_unknown_run(store_path, tmp_path, tb):
    line = one_line_error(run_cli("report", "nope", "--store", str(store_path), "-o", str(tmp_path / "r.html")))
    assert "no run 'nope'" in line and not (tmp_path / "r.html").exists()
    assert "no run 'nope'" in one_line_error(tb("compare", "A", "nope", "--store", str(store_path)))


def test_compare_of_different_suites(store_path):
    res = run_cli("compare", "A", "C", "--store", str(store_path))
    line = one_line_error(res)
    assert res.returncode == 2 and "'quick'" in line and "'other-suite'" in line and "--force" in line

def test_compare_forced(store_path, tb):
    assert tb("compare", "A", "C", "--store", str(store_path), "--force").returncode == 0


def test_compare_table(store_path, tb):
    res = tb("compare", "A", "B", "--store", str(store_path))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert out.index("provenance differences") < out.index("run B (B) against run A (A)")
    assert "vm accel: kvm -> tcg" in out and "server kernel: 6.1.0-test -> 6.1.0-other" in out
    for word in ("slower", "faster", "no significant change", "not comparable", "higher"):
        assert word in out
    assert "-50.0%" in out and "Benjamini-Hochberg" in out
    data = json.loads(tb("compare", "A", "B", "--store", str(store_path), "--format", "json").stdout)
    assert {r["verdict"] for r in data["rows"]} >= {"slower", "faster"} and data["test"].startswith("Mann-Whitney")
    rows = list(csv.DictReader(io.StringIO(tb("compare", "A", "B", "--store", str(store_path),
                                                   "--format", "csv").stdout)))
    assert rows[0]["verdict"] and "p_adjusted" in rows[0]


def test_results_list_shows_date_duration_status_host_samples(store_path, tb):
    res = tb("results", "--list", "--store", str(store_path))
    assert res.returncode == 0, res.stderr
    for col in ("date", "duration", "status", "host", "samples"):
        assert col in res.stdout
    assert "labhost" in res.stdout and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", res.stdout)


@pytest.mark.parametrize("columns", ["60", "200"])
def test_results_table_never_cuts_a_number(store_path, columns, tb):
    from orchestrator.results.store import Store

    res = tb("results", "B", "--store", str(store_path), columns=int(columns))
    assert res.returncode == 0, res.stderr
    assert "…" not in res.stdout
    groups = summarize_rows(list(Store.open_existing(store_path).samples("B")))
    for g in groups:
        for s in g.per_platform.values():
            if s.median is not None:
                assert fmt(s.median) in res.stdout
            if s.has_interval:
                assert f"[{fmt(s.ci_low)}–{fmt(s.ci_high)}]" in res.stdout
    assert "vm (kvm)" not in res.stdout and "vm (tcg)" in res.stdout  # the accelerator beside a VM's name


def test_wide_prints_rows_on_one_line(store_path, tb):
    res = tb("results", "B", "--store", str(store_path), "--wide", columns=60)
    assert res.returncode == 0
    assert any(len(line) > 120 for line in res.stdout.splitlines())
    assert any("vm / " not in line and "requests_per_s (req/s)" in line and "vm (tcg)" in line
               for line in res.stdout.splitlines())


def test_summary_export(store_path, tb):
    res = tb("results", "B", "--store", str(store_path), "--format", "csv", "--summary")
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert {"median", "ci_low", "ci_reason", "tail_name", "flag_names"} <= set(rows[0])
    data = json.loads(tb("results", "B", "--store", str(store_path), "--format", "json", "--summary").stdout)
    assert (data["summary"] and data["groups"][0]["ranking"] is not None) or data["groups"][0]["notes"] == []
    samples = json.loads(tb("results", "B", "--store", str(store_path), "--format", "json").stdout)
    assert "provenance" in samples["samples"][0]


def test_report_writes_one_file(store_path, tmp_path, tb):
    out = tmp_path / "sub" / "report.html"
    res = tb("report", "A", "B", "--store", str(store_path), "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert out.is_file() and "2 runs" in res.stdout
    assert out.read_text().count('<article class="run"') == 2


def test_help_names_the_commands(tb):
    res = tb("--help")
    for cmd in ("compare", "report", "results"):
        assert cmd in res.stdout
    assert "--force" in tb("compare", "--help").stdout
    assert "--output" in tb("report", "--help").stdout
    assert "--summary" in tb("results", "--help").stdout
