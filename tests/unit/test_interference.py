"""Interference: host load from /proc, live testbed runs from the ledger, the overlap refusal."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from orchestrator import errors
from orchestrator.hosts.local import LocalHost
from orchestrator.interference import (LiveRun, cpu_load_between, host_load, live_runs, open_meta, overlapping_runs,
                                       parse_loadavg, parse_proc_stat, refuse_overlap)
from orchestrator.ledger import process_start_time

STAT_A = """cpu  1000 0 500 8000 100 0 0 0 0 0
cpu0 500 0 250 4000 50 0 0 0 0 0
cpu1 500 0 250 4000 50 0 0 0 0 0
intr 12345
"""
STAT_B = """cpu  1100 0 550 8100 100 0 0 50 40 0
cpu0 600 0 300 4000 50 0 0 50 40 0
cpu1 500 0 250 4100 50 0 0 0 0 0
"""


def test_steal_and_busy_between_two_reads():
    load = cpu_load_between(parse_proc_stat(STAT_A, 0.0), parse_proc_stat(STAT_B, 1.0))
    # whole host: 300 jiffies passed (guest time is inside user), 50 of them stolen
    assert load["steal_pct"] == pytest.approx(100 * 50 / 300, abs=0.01)
    assert load["cpu_busy_pct"] == {"0": 100.0, "1": 0.0} and load["window_s"] == 1.0
    assert parse_loadavg("0.52 0.61 0.70 1/234 5678\n") == [0.52, 0.61, 0.70]
    with pytest.raises(ValueError):
        parse_proc_stat("intr 1\n")


@pytest.fixture
def other_run():
    """A live process standing in for another testbed run (pid and start time as the ledger keeps them)."""
    proc = subprocess.Popen(["sleep", "60"])
    time.sleep(0.05)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def write_ledger(directory, run_id, pid, start=None, **meta):
    directory.mkdir(parents=True, exist_ok=True)
    entry = {"op": "open", "pid": pid, "start": start or process_start_time(pid), "t": time.time(), **meta}
    (directory / f"{run_id}.jsonl").write_text(json.dumps(entry) + "\n")


def test_live_runs_and_overlap_by_cpu(tmp_path, other_run):
    ledger = tmp_path / "ledger"
    write_ledger(ledger, "busy01", other_run.pid, **open_meta("quickstart", "localhost", [1], "localhost", [0]))
    gone = subprocess.Popen(["true"])
    gone_start = process_start_time(gone.pid) or 1
    gone.wait(timeout=10)
    write_ledger(ledger, "dead01", gone.pid, gone_start, **open_meta("x", "localhost", [1], "localhost", [0]))
    write_ledger(ledger, "mine01", os.getpid(), **open_meta("x", "localhost", [1], "localhost", [0]))  # this process
    runs = live_runs(ledger)
    assert [r.run_id for r in runs] == ["busy01"] and runs[0].server_cpus == [1] and runs[0].suite == "quickstart"
    assert [r.run_id for r in overlapping_runs(ledger, [1])] == ["busy01"]
    assert [r.run_id for r in overlapping_runs(ledger, [0])] == ["busy01"]  # its client is on CPU 0
    assert overlapping_runs(ledger, [2, 3]) == []
    assert [r.run_id for r in overlapping_runs(ledger, None)] == ["busy01"]  # mine unpinned: every CPU
    assert overlapping_runs(ledger, [1], host="labhost-2") == []  # another machine
    assert overlapping_runs(ledger, [1], exclude_run="busy01") == []


def test_a_run_without_recorded_cpus_overlaps_everything(tmp_path, other_run):
    ledger = tmp_path / "ledger"
    write_ledger(ledger, "old001", other_run.pid)
    (run,) = overlapping_runs(ledger, [5], host="anywhere")
    assert not run.recorded


def test_refusal_is_one_line(tmp_path):
    run = LiveRun("busy01", 4242, "quickstart", "localhost", [1], "localhost", [0], True)
    with pytest.raises(errors.ResourceBusyError) as exc:
        refuse_overlap([run])
    msg = str(exc.value)
    assert "\n" not in msg and "busy01" in msg and "CPUs 0,1" in msg and "--allow-overlap" in msg
    refuse_overlap([])  # nothing live: nothing raised


def test_host_load_of_this_machine(tmp_path, other_run):
    ledger = tmp_path / "ledger"
    write_ledger(ledger, "busy01", other_run.pid, **open_meta("q", "localhost", [1], "localhost", [0]))
    load = host_load(LocalHost(), window=0.05, ledger_dir=ledger, my_run="mine01", my_cpus=[1])
    assert len(load["loadavg"]) == 3 and load["steal_pct"] is not None and load["steal_pct"] >= 0
    assert set(load["cpu_busy_pct"]) == {str(i) for i in range(os.cpu_count() or 1)}
    assert load["overlap"] == ["busy01"] and load["live_runs"][0]["run_id"] == "busy01"
    quiet = host_load(LocalHost(), window=0.05, ledger_dir=tmp_path / "none", my_cpus=[1])
    assert quiet["overlap"] == [] and quiet["live_runs"] == []
    json.dumps(load)  # it goes into provenance as is
