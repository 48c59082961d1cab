"""The night's verdict on a seeded store: the issue's acceptance test, configuration changes, exit codes, JUnit."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from helpers import run_cli
from nightly_history import Lab, seed_history, seed_night
from orchestrator.results.nightly import (CONFIGURATION_CHANGE, IMPROVEMENT, NOT_ENOUGH, NOT_MEASURED, OK,
                                          NightlyConfig, analyze_nightly, series_history, write_junit)
from orchestrator.results.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "results.sqlite")
    yield s
    s.close()


def test_one_metric_30_percent_worse_is_the_one_regression_and_names_its_night(store):
    seed_history(store, 10)
    seed_night(store, 10, factors={"native/startup_ms": 1.3})
    report = analyze_nightly(store, "nightly")
    assert [(v.key.platform, v.key.metric) for v in report.regressions] == [("native", "startup_ms")]
    v = report.regressions[0]
    assert v.first is not None and v.first.run_id == "n010"
    assert v.change is not None and 0.2 < v.change.rel_change < 0.4
    assert report.exit_code == 1
    line = report.lines()[0]
    for part in ("regression: localhost nightly native redis cold-start startup_ms", "95% CI", "(run n010)",
                 "provenance difference at that night: none", "Mann-Whitney U", "BH-adjusted p="):
        assert part in line
    assert all(v.status == OK for v in report.verdicts if v is not report.regressions[0])


def test_nights_within_noise_are_not_flagged(store):
    runs = seed_history(store, 16)
    for run_id in runs[4:]:
        report = analyze_nightly(store, "nightly", run_id=run_id)
        assert report.exit_code == 0, report.lines()
        assert not report.of(IMPROVEMENT)


def test_a_tool_version_change_is_a_configuration_change_and_starts_a_new_baseline(store):
    seed_history(store, 8)
    upgraded = Lab(tools={"redis-server": "7.2.4", "runc": "1.1.5", "redis-benchmark": "7.0.15"})
    for night in range(8, 14):  # redis got 30% slower to start with the new version: not a regression
        seed_night(store, night, lab=upgraded, factors={"native/startup_ms": 1.3})
    at_change = analyze_nightly(store, "nightly", run_id="n008")
    assert at_change.exit_code == 0 and not at_change.regressions
    changes = at_change.of(CONFIGURATION_CHANGE)
    assert len(changes) == len(at_change.verdicts)
    assert changes[0].config_diff == ["tools.redis-server: 7.0.15 -> 7.2.4"]
    assert "configuration change: " in at_change.lines()[0] and "a new baseline starts at" in at_change.lines()[0]

    two_nights = analyze_nightly(store, "nightly", run_id="n009")
    assert {v.status for v in two_nights.verdicts} == {NOT_ENOUGH}
    assert "not enough history (2 of 5 nights): 5 series (configuration changed at" in two_nights.lines()[0]
    assert two_nights.exit_code == 0

    later = analyze_nightly(store, "nightly")  # six nights on the new version: judged against them only
    assert later.exit_code == 0 and {v.status for v in later.verdicts} == {OK}


def test_a_kernel_change_starts_a_new_baseline_too(store):
    seed_history(store, 6)
    seed_night(store, 6, lab=Lab(kernel="6.6.0-1-amd64"), factors={"runc/requests_per_s": 0.6})
    report = analyze_nightly(store, "nightly")
    assert not report.regressions
    assert report.of(CONFIGURATION_CHANGE)[0].config_diff == ["host.kernel: 6.1.0-18-amd64 -> 6.6.0-1-amd64"]


def test_an_improvement_is_reported_without_failing(store):
    seed_history(store, 8)
    seed_night(store, 8, factors={"runc/requests_per_s": 1.4})
    report = analyze_nightly(store, "nightly")
    assert report.exit_code == 0
    assert [(v.key.platform, v.key.metric) for v in report.of(IMPROVEMENT)] == [("runc", "requests_per_s")]
    assert report.lines()[0].startswith("improvement: ")


def test_per_metric_threshold(store):
    seed_history(store, 8)
    seed_night(store, 8, factors={"native/startup_ms": 1.3})
    config = NightlyConfig(metric_thresholds={"startup_ms": 0.5})
    assert analyze_nightly(store, "nightly", config=config).exit_code == 0


def test_not_enough_history_is_a_status_line(store):
    seed_history(store, 2)
    report = analyze_nightly(store, "nightly")
    assert report.exit_code == 0
    assert report.lines()[0] == "not enough history (2 of 5 nights): 5 series"


def test_unfinished_runs_are_not_nights_and_failed_cells_are_not_measured(store):
    seed_history(store, 8)
    seed_night(store, 8, failed={"runc/startup_ms"})
    seed_night(store, 9, status="interrupted", factors={"native/startup_ms": 2.0})
    report = analyze_nightly(store, "nightly")
    assert report.run_id == "n008" and report.exit_code == 0
    unmeasured = report.of(NOT_MEASURED)
    assert [(v.key.platform, v.key.metric) for v in unmeasured] == [("runc", "startup_ms")]
    assert "every sample failed" in unmeasured[0].note


def test_hosts_are_separate_series(store):
    seed_history(store, 8)
    seed_history(store, 8, lab=Lab(host="lab1"), seed=7)
    seed_night(store, 8, lab=Lab(host="lab1"), factors={"native/startup_ms": 1.3}, seed=7)
    report = analyze_nightly(store, "nightly", host="lab1")
    assert {v.key.host for v in report.verdicts} == {"lab1"}
    assert len(report.regressions) == 1 and report.regressions[0].key.host == "lab1"


def test_junit_has_one_testcase_per_series(store, tmp_path):
    seed_history(store, 10)
    seed_night(store, 10, factors={"native/startup_ms": 1.3})
    report = analyze_nightly(store, "nightly")
    path = tmp_path / "out" / "nightly.xml"
    write_junit(report, path)
    root = ET.parse(path).getroot()
    suite = root.find("testsuite")
    assert suite is not None and suite.get("tests") == "5" and suite.get("failures") == "1"
    failures = [tc for tc in suite.iter("testcase") if tc.find("failure") is not None]
    assert [tc.get("classname") for tc in failures] == ["nightly.localhost.native"]
    assert failures[0].get("name") == "redis cold-start startup_ms"
    assert "(run n010)" in failures[0].find("failure").get("message")


def test_history_marks_change_points_and_configuration_changes(store):
    seed_history(store, 8)
    for night in range(8, 16):
        seed_night(store, night, factors={"runc/startup_ms": 1.3})
    upgraded = Lab(tools={"redis-server": "7.0.15", "runc": "1.1.12", "redis-benchmark": "7.0.15"})
    for night in range(16, 20):
        seed_night(store, night, lab=upgraded)
    [h] = series_history(store, "nightly", metric="startup_ms", config=NightlyConfig())[1:]
    assert h.key.platform == "runc" and len(h.nights) == 20
    assert [m.night for m in h.change_points] == [8] and "change +" in h.change_points[0].text
    assert [(m.night, m.text) for m in h.config_changes] == [(16, "configuration: tools.runc: 1.1.5 -> 1.1.12")]


# --- the command line: exit codes and one-line errors --------------------------------------

def test_cli_exit_codes_and_one_line_errors(tmp_path):
    path = tmp_path / "results.sqlite"
    s = Store(path)
    seed_history(s, 10)
    seed_night(s, 10, factors={"native/startup_ms": 1.3})
    s.close()
    junit = tmp_path / "nightly.xml"
    res = run_cli("nightly", "nightly", "--store", str(path), "--no-run", "--junit", str(junit))
    assert res.returncode == 1, res.stderr
    assert res.stdout.splitlines()[0].startswith("regression: localhost nightly native redis cold-start startup_ms")
    assert junit.is_file()
    assert run_cli("nightly", "nightly", "--store", str(path), "--run", "n009").returncode == 0
    hist = run_cli("history", "nightly", "--store", str(path), "--metric", "startup_ms", "--platform", "native")
    assert hist.returncode == 0 and "n010" in hist.stdout and "regression +" in hist.stdout

    for args, message in (
        (("nightly", "other-suite", "--no-run"), "suite 'other-suite': no history in"),
        (("nightly", "other-suite"), "other-suite: no such suite file; pass the suite's file to run it"),
        (("nightly", "nightly", "--no-run", "--host", "nohost"), "--host nohost: suite 'nightly' has no runs on that host"),
        (("nightly", "nightly", "--run", "zzz"), "run 'zzz': not a finished run"),
        (("history", "nightly", "--metric", "nope"), "--metric nope: suite 'nightly' has no such metric"),
    ):
        res = run_cli(*args, "--store", str(path))
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert res.stderr.strip().count("\n") == 0 and message in res.stderr, res.stderr

    missing = run_cli("nightly", "nightly", "--no-run", "--store", str(tmp_path / "none.sqlite"))
    assert missing.returncode == 2 and "no result store there" in missing.stderr
    assert not (tmp_path / "none.sqlite").exists()  # looking never creates a store


def test_cli_a_corrupted_store_is_one_line(tmp_path):
    path = tmp_path / "results.sqlite"
    s = Store(path)
    seed_history(s, 6)
    s.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    s.close()
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xde\xad\xbe\xef" * ((4096 - 100) // 4)  # the schema page: the file is no database
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(bytes(data))
    res = run_cli("nightly", "nightly", "--no-run", "--store", str(bad))
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "result store is corrupted" in res.stderr

    data = bytearray(path.read_bytes())  # garbage over the samples table's first page
    start = 3 * 4096 + 8
    data[start:start + 292] = b"\x00\xff" * 146
    bad.write_bytes(bytes(data))
    res = run_cli("history", "nightly", "--store", str(bad))
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "testbed: error:" in res.stderr and "result store" in res.stderr and "Traceback" not in res.stderr


def test_suite_nightly_block_sets_thresholds_and_the_command_line_wins(tmp_path):
    from orchestrator.cli import _nightly_config, _suite_plan

    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nplatforms: {native: {}}\nworkloads: {redis: {}}\nbenchmarks: {boot: {kind: startup}}\n"
                     "nightly: {threshold: 0.1, metric_thresholds: {startup_ms: 0.2}, min_nights: 7}\n")
    cfg = _nightly_config(None, {}, None, _suite_plan(str(suite)))
    assert (cfg.threshold, cfg.threshold_for("startup_ms"), cfg.min_nights) == (0.1, 0.2, 7)
    cfg = _nightly_config(0.03, {"startup_ms": 0.5}, 4, _suite_plan(str(suite)))
    assert (cfg.threshold, cfg.threshold_for("startup_ms"), cfg.min_nights) == (0.03, 0.5, 4)
    assert _nightly_config(None, {}, None, _suite_plan("a-suite-name")).threshold == 0.05
    suite.write_text(suite.read_text().replace("threshold: 0.1", "threshold: -1"))
    res = run_cli("nightly", str(suite), "--no-run")
    assert res.returncode == 2 and "nightly.threshold" in res.stderr and "Traceback" not in res.stderr


def test_history_of_a_suite_with_no_measured_night_is_one_line(tmp_path):
    from nightly_history import DEFAULT_METRICS

    path = tmp_path / "results.sqlite"
    s = Store(path)
    for night in range(3):  # every sample of every series failed: no series has a night to show
        seed_night(s, night, failed={f"{m.platform}/{m.metric}" for m in DEFAULT_METRICS})
    s.close()
    res = run_cli("history", "nightly", "--store", str(path))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
    assert "suite 'nightly': no night with a measured value" in res.stderr
