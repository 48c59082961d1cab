"""Bad input and interruptions: one clear line, a non-zero exit, samples kept, nothing left behind."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time

import pytest

from helpers import ROOT, TESTBED, leftovers, run_cli, store_runs

pytestmark = pytest.mark.slow

REDIS_SUITE = """\
name: {name}
repetitions: {reps}
lab: {{subnet: {subnet}}}
platforms:
  {platform}: {popts}
workloads:
  redis: {wopts}
benchmarks:
  boot: {{kind: startup, warmup: 0}}
"""


def suite(tmp_path, name="f", reps=1, subnet="10.77.0.0/24", platform="native", popts="{}", wopts="{}"):
    p = tmp_path / f"{name}.yaml"
    p.write_text(REDIS_SUITE.format(name=name, reps=reps, subnet=subnet, platform=platform, popts=popts, wopts=wopts))
    return p


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("testbed: error:")]


runs = store_runs


def test_missing_runtime_binary(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("ip", "taskset", "nproc", "cat", "uname", "runc", "ldd", "dpkg-query", "git", "sysctl", "unshare",
                 "redis-server"):
        if shutil.which(tool):
            (bindir / tool).symlink_to(shutil.which(tool))
    res = run_cli("run", str(suite(tmp_path, platform="gvisor")), "--store", str(tmp_path / "r.sqlite"),
                  env={"PATH": str(bindir)}, timeout=60)
    assert res.returncode == 3, res.stderr
    assert error_lines(res.stderr) == [
        "testbed: error: missing: runsc on localhost (needed by platform gvisor; Debian package runsc); "
        "run ./setup.sh (see `testbed doctor`)"]
    assert "Traceback" not in res.stderr


def test_workload_that_never_becomes_ready(tmp_path):
    # redis listens on another port than the one its probe asks: up, but never ready.
    path = suite(tmp_path, platform="runc", popts="{ready_timeout: 3}", wopts="{extra_args: [--port, '6380']}")
    store = tmp_path / "r.sqlite"
    res = run_cli("run", str(path), "--store", str(store), timeout=120)
    assert res.returncode == 1
    lines = error_lines(res.stderr)
    assert len(lines) == 1 and "gave no correct answer to its readiness probe within 3 s (port closed" in lines[0]
    (run_id, status, _reason, samples), = runs(store)
    assert status == "failed" and samples == 1  # the failure is a sample with its reason
    assert leftovers(run_id) == []


def test_wrong_answer_is_quoted_in_the_not_ready_line(tmp_path):
    # protected mode refuses the client namespace's PING: the one line says what redis answered.
    path = suite(tmp_path, popts="{ready_timeout: 3}", wopts="{extra_args: [--protected-mode, 'yes']}")
    res = run_cli("run", str(path), "--store", str(tmp_path / "r.sqlite"), timeout=120)
    assert res.returncode == 1
    lines = error_lines(res.stderr)
    assert len(lines) == 1 and "(port open; last: port open but the probe's answer was wrong: PING -> b'-DENIED" \
        in lines[0], lines


def test_lab_subnet_already_in_use(tmp_path):
    subprocess.run(["ip", "link", "add", "tbtestdum0", "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", "10.79.5.1/24", "dev", "tbtestdum0"], check=True)
        res = run_cli("run", str(suite(tmp_path, subnet="10.79.5.0/24")), "--store", str(tmp_path / "r.sqlite"),
                      timeout=60)
    finally:
        subprocess.run(["ip", "link", "del", "tbtestdum0"], check=True)
    assert res.returncode == 4
    assert error_lines(res.stderr) == [f"testbed: error: {tmp_path / 'f.yaml'}: lab.subnet 10.79.5.0/24 overlaps "
                                       f"10.79.5.1/24 on host interface tbtestdum0; choose a subnet this host does not use"]
    assert not (tmp_path / "r.sqlite").exists() or runs(tmp_path / "r.sqlite") == []


def start_long_run(tmp_path, platform="runc"):
    store = tmp_path / "r.sqlite"
    proc = subprocess.Popen([TESTBED, "run", str(suite(tmp_path, name="long", reps=500, platform=platform)),
                             "--store", str(store)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "COLUMNS": "160"})
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            rs = runs(store) if store.exists() else []
        except sqlite3.OperationalError:  # the file exists before the run has created its tables
            rs = []
        if rs and rs[0][3] >= 6:
            return proc, store, rs[0][0]
        if proc.poll() is not None:
            pytest.fail(f"run ended early: {proc.stderr.read()}")
        time.sleep(0.2)
    proc.kill()
    pytest.fail("the run produced no samples within 90 s")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_keeps_samples_and_releases_everything(tmp_path, sig):
    proc, store, run_id = start_long_run(tmp_path)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    lines = error_lines(stderr)
    assert len(lines) == 1 and f"run {run_id} interrupted by SIG" in lines[0] and "samples kept" in lines[0]
    (_rid, status, _reason, samples), = runs(store)
    assert status == "interrupted" and samples >= 6
    assert leftovers(run_id) == []


def test_killed_run_is_reclaimed_by_gc(tmp_path):
    proc, store, run_id = start_long_run(tmp_path)
    proc.kill()
    proc.wait(timeout=30)
    res = run_cli("gc", timeout=120)
    assert res.returncode == 0, res.stderr
    assert leftovers(run_id) == [], res.stdout
    assert runs(store)[0][3] >= 6  # what was measured before the kill is still there


def test_results_table_and_exports(tmp_path):
    store = tmp_path / "r.sqlite"
    res = run_cli("run", str(suite(tmp_path, reps=3)), "--store", str(store), timeout=120)
    assert res.returncode == 0, res.stderr
    assert "startup_ms" in res.stdout and "native" in res.stdout
    table = run_cli("results", "--store", str(store))
    assert table.returncode == 0 and "median" in table.stdout and "95% CI" in table.stdout
    data = json.loads(run_cli("results", "--store", str(store), "--format", "json").stdout)
    startup = [s for s in data["samples"] if s["metric"] == "startup_ms"]
    assert len(startup) == 3 and all(s["provenance"]["suite_hash"] for s in startup)
    csv_out = run_cli("results", "--store", str(store), "--format", "csv").stdout
    rows = list(csv.DictReader(io.StringIO(csv_out)))
    assert len(rows) == len(data["samples"]) and json.loads(rows[0]["provenance"])["image_digest"]
    missing = run_cli("results", "nosuchrun", "--store", str(store))
    assert missing.returncode == 1 and error_lines(missing.stderr)
