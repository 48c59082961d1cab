"""Real runs under the two failures the hardening issue found mishandled: a SIGKILLed run (it
stayed `running` forever) and a result store on a full file system (tracebacks, run left
`running`). Native redis cold starts on the lab subnet 10.92.0.0/24; the full file system is a
small tmpfs mounted and filled here (needs root)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from helpers import ROOT, TESTBED, leftovers, run_cli, store_runs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

SUBNET = "10.92.0.0/24"
SUITE = f"""\
name: harden
repetitions: {{reps}}
lab: {{{{subnet: {SUBNET}}}}}
platforms: {{{{native: {{{{}}}}}}}}
workloads: {{{{redis: {{{{}}}}}}}}
benchmarks: {{{{boot: {{{{kind: startup, warmup: 0}}}}}}}}
"""


def write_suite(tmp_path: Path, reps: int) -> Path:
    p = tmp_path / "harden.yaml"
    p.write_text(SUITE.format(reps=reps))
    return p


runs = store_runs


def start_run(tmp_path: Path, store: Path, reps: int = 500, min_samples: int = 3):
    proc = subprocess.Popen([TESTBED, "run", str(write_suite(tmp_path, reps)), "--store", str(store)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "160"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            rs = runs(store) if store.exists() else []
        except sqlite3.OperationalError:
            rs = []
        if rs and rs[-1][3] >= min_samples:
            return proc, rs[-1][0], rs[-1][3]
        if proc.poll() is not None:
            pytest.fail(f"run ended early: {proc.stderr.read()}")
        time.sleep(0.2)
    proc.kill()
    pytest.fail("no samples within 120 s")


def test_sigkilled_run_is_reconciled_as_killed_and_cleaned_up(tmp_path):
    store = tmp_path / "r.sqlite"
    proc, run_id, before = start_run(tmp_path, store)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert runs(store)[0][1] == "running"  # what the store says before anyone reconciles

    listing = run_cli("results", "--list", "--store", str(store))
    assert listing.returncode == 0 and "killed" in listing.stdout, listing.stdout + listing.stderr
    shown = run_cli("results", run_id, "--store", str(store))
    assert shown.returncode == 0 and f"run {run_id} is incomplete (killed)" in shown.stdout
    gc = run_cli("gc", "--store", str(store), timeout=120)
    assert gc.returncode == 0, gc.stderr
    assert leftovers(run_id) == [], gc.stdout
    (_rid, status, reason, samples), = runs(store)
    assert status == "killed" and "SIGKILL" in reason and samples >= before  # no committed sample lost
    home = Path(os.environ["TESTBED_HOME"])
    assert (home / "runs" / run_id).is_dir()
    old = run_cli("gc", "--runs-older-than", "0s", "--store", str(store))
    assert old.returncode == 0 and f"removed run directory {home.resolve() / 'runs' / run_id}" in old.stdout
    assert not (home / "runs" / run_id).exists()


@pytest.fixture
def small_fs(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs-testbed-harden", str(mnt)],
                   check=True, timeout=30)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False, timeout=30)


def fill(mnt: Path) -> Path:
    filler = mnt / "filler"
    with open(filler, "ab", buffering=0) as fh:
        for block in (65536, 512):
            try:
                while True:
                    fh.write(b"\0" * block)
            except OSError:
                pass
    return filler


def test_new_store_on_a_full_disk_is_one_line_and_leaves_no_file(tmp_path, small_fs):
    fill(small_fs)
    store = small_fs / "r.sqlite"
    res = run_cli("run", str(write_suite(tmp_path, 1)), "--store", str(store), timeout=120)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    (line,) = res.stderr.splitlines()
    assert line.startswith(f"testbed: error: result store {store}: open: ") and "free space" in line, line
    assert not store.exists()


def test_disk_filling_during_a_run_is_one_line_and_keeps_what_was_committed(tmp_path, small_fs):
    store = small_fs / "r.sqlite"
    proc, run_id, before = start_run(tmp_path, store, reps=500, min_samples=2)
    filler = fill(small_fs)
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode != 0 and "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("testbed: error:")]
    assert len(errors) == 1 and f"result store {store}: storing a native/redis/startup_ms sample" in errors[0]
    assert "disk is full" in errors[0] and "free space" in errors[0]
    assert leftovers(run_id) == []
    filler.unlink()
    db = sqlite3.connect(store)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
    (_rid, status, reason, samples), = runs(store)
    # The space the store reserved at the run's start let the run's end be recorded.
    assert samples >= before and status == "failed" and "disk is full" in reason, (status, reason)
    assert sorted(os.listdir(small_fs)) == ["r.sqlite", "r.sqlite-shm", "r.sqlite-wal"] or \
        sorted(os.listdir(small_fs)) == ["r.sqlite"]  # the reserve was an unnamed file


def test_sigkilled_run_resumes_with_no_duplicate_and_no_missing_repetition(tmp_path):
    """SIGKILL mid-run, `testbed gc` (the run shows as killed), then `testbed run --resume`: the run
    completes in place, every repetition exactly once."""
    store = tmp_path / "r.sqlite"
    reps = 12
    proc, run_id, _before = start_run(tmp_path, store, reps=reps, min_samples=10)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert run_cli("gc", "--store", str(store), timeout=120).returncode == 0
    assert runs(store)[0][1] == "killed" and leftovers(run_id) == []
    res = run_cli("run", str(write_suite(tmp_path, reps)), "--store", str(store), "--resume", run_id, timeout=300)
    assert res.returncode == 0, res.stderr
    con = sqlite3.connect(store)
    try:
        reps_seen = [r for (r,) in con.execute("SELECT repetition FROM samples WHERE run_id=? AND metric='startup_ms' "
                                                "AND status='ok' ORDER BY repetition", (run_id,))]
        status, prov = con.execute("SELECT status, provenance FROM runs WHERE run_id=?", (run_id,)).fetchone()
    finally:
        con.close()
    assert reps_seen == list(range(reps))  # none missing, none twice
    assert status == "ok" and '"resumed"' in prov
    assert leftovers(run_id) == []
    again = run_cli("run", str(write_suite(tmp_path, reps + 1)), "--store", str(store), "--resume", run_id)
    assert again.returncode == 2 and "changed since that run" in again.stderr and "Traceback" not in again.stderr
