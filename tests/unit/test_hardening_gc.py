"""`testbed gc --runs-older-than DURATION`: old per-run scratch directories of runs that are not
live go; everything else (live runs, recent ones, symlinks, names testbed never makes) stays."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from orchestrator import ledger

from helpers import run_cli

DAY = 86400.0


def run_dir(root, name: str, age_days: float, size: int = 1000):
    d = root / "runs" / name
    (d / "native").mkdir(parents=True)
    (d / "native" / "console.log").write_bytes(b"x" * size)
    t = time.time() - age_days * DAY
    for p in (d / "native" / "console.log", d / "native", d):
        os.utime(p, (t, t))
    return d


def test_old_dead_runs_go_and_the_rest_stay(private_home, tmp_path):
    old = run_dir(private_home, "aaaa1111", 10)
    recent = run_dir(private_home, "bbbb2222", 1)
    live_by_ledger = run_dir(private_home, "cccc3333", 30)
    ledger.Ledger("cccc3333")  # this process owns it: live
    dead_ledger = run_dir(private_home, "dddd4444", 30)
    proc = subprocess.Popen(["true"])
    proc.wait()
    (private_home / "ledger" / "dddd4444.jsonl").write_text(json.dumps({"op": "open", "pid": proc.pid, "start": 1}) + "\n")
    live_by_store = run_dir(private_home, "eeee5555", 30)
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep").write_text("x")
    (private_home / "runs" / "ffff6666").symlink_to(outside)
    odd = private_home / "runs" / ".hidden"
    odd.mkdir()
    done = ledger.remove_old_run_dirs(7 * DAY, live_runs={"eeee5555"})
    assert sorted(d.split()[3] for d in done) == sorted(str(p.resolve()) for p in (old, dead_ledger))
    assert not old.exists() and not dead_ledger.exists()
    for kept in (recent, live_by_ledger, live_by_store, odd, outside / "keep", private_home / "runs" / "ffff6666"):
        assert os.path.lexists(kept), kept


def test_a_runs_directory_symlinked_out_of_home_is_refused(private_home, tmp_path):
    outside = tmp_path / "elsewhere-runs"
    (outside / "aaaa1111").mkdir(parents=True)
    t = time.time() - 30 * DAY
    os.utime(outside / "aaaa1111", (t, t))
    (private_home / "runs").rmdir()
    (private_home / "runs").symlink_to(outside)
    from orchestrator.errors import TestbedError as Refused

    with pytest.raises(Refused, match="outside testbed's home"):
        ledger.remove_old_run_dirs(DAY)
    assert (outside / "aaaa1111").is_dir()


@pytest.mark.parametrize("text, seconds", [("7d", 7 * DAY), ("12h", 43200), ("30m", 1800), ("90s", 90),
                                            ("2w", 14 * DAY), ("1.5d", 1.5 * DAY)])
def test_durations(text, seconds):
    assert ledger.parse_duration(text) == seconds


def test_gc_cli_removes_old_run_dirs_and_rejects_a_bad_duration(private_home):
    old = run_dir(private_home, "aaaa1111", 10, size=2_000_000)
    env = {"TESTBED_HOME": str(private_home)}
    res = run_cli("gc", "--runs-older-than", "7d", env=env)
    assert res.returncode == 0, res.stderr
    assert "removed run directory" in res.stdout and "2.0 MB" in res.stdout and not old.exists()
    res = run_cli("gc", "--runs-older-than", "seven days", env=env)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    (line,) = res.stderr.splitlines()
    assert line.startswith("testbed: error: --runs-older-than: 'seven days' is not a duration")
