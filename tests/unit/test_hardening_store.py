"""The result store: SQLite failures are one line (StoreError), runs record their owner, a run
whose process is gone is reconciled as `killed`, old stores stay readable, and reading results
never creates a store."""

from __future__ import annotations

import json
import sqlite3
import subprocess

import pytest

from orchestrator import ledger
from orchestrator.results.store import Store, StoreError

from helpers import run_cli

PROV = {"host": "h", "testbed_rev": "r", "suite_hash": "s", "image_digest": "d"}

# The runs table as stores made before owners were recorded have it.
OLD_SCHEMA = """
CREATE TABLE runs (run_id TEXT PRIMARY KEY, suite TEXT NOT NULL, suite_path TEXT NOT NULL, suite_hash TEXT NOT NULL,
    started REAL NOT NULL, finished REAL, status TEXT NOT NULL, reason TEXT, testbed_rev TEXT NOT NULL,
    provenance TEXT NOT NULL);
CREATE TABLE samples (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL REFERENCES runs(run_id),
    measured REAL NOT NULL, platform TEXT NOT NULL, workload TEXT NOT NULL, benchmark TEXT NOT NULL,
    metric TEXT NOT NULL, value REAL, unit TEXT NOT NULL, repetition INTEGER NOT NULL, params TEXT NOT NULL,
    status TEXT NOT NULL, reason TEXT, provenance TEXT NOT NULL);
"""


def begin(store: Store, run_id: str = "r1", owner: dict | None = None) -> None:
    store.begin_run(run_id, "suite", "suites/x.yaml", "hash", "rev", {"facts": 1}, owner=owner)


def sample(store: Store, run_id: str = "r1", rep: int = 0, params: dict | None = None, status: str = "ok") -> int:
    return store.add_sample(run_id, platform="native", workload="redis", benchmark="cold-start", metric="startup_ms",
                            value=1.0 if status == "ok" else None, unit="ms", repetition=rep, params=params or {},
                            status=status, reason=None if status == "ok" else "boom", provenance=PROV)


def dead_owner() -> dict:
    proc = subprocess.Popen(["sleep", "30"])
    owner = ledger.owner_record(proc.pid)
    proc.kill()
    proc.wait()
    return owner


class FullDisk:
    """A connection whose writes fail as SQLite's do on a full file system."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def execute(self, sql: str, *args):
        if sql.lstrip().upper().startswith(("INSERT", "UPDATE", "ALTER")):
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, *args)

    def close(self) -> None:
        self.db.close()


def test_full_disk_writes_are_one_line_store_errors(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    begin(store)
    sample(store)
    store.db = FullDisk(store.db)
    for write in (lambda: sample(store, rep=1), lambda: store.end_run("r1", "ok"), lambda: begin(store, "r2")):
        with pytest.raises(StoreError) as exc:
            write()
        msg = str(exc.value)
        assert "\n" not in msg and str(tmp_path / "r.sqlite") in msg and "disk is full" in msg
        assert "free space" in msg
    store.db = store.db.db
    assert [s.repetition for s in store.samples("r1")] == [0]  # the committed sample is kept


def test_reading_results_does_not_create_a_store(tmp_path):
    missing = tmp_path / "missing.sqlite"
    with pytest.raises(StoreError, match="no result store at"):
        Store(missing, create=False)
    res = run_cli("results", "--store", str(missing))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.splitlines() == [f"testbed: error: no result store at {missing} (the file does not exist); "
                                       f"check --store (a store is made by the first `testbed run` that writes to it)"]
    assert not missing.exists()
    res = run_cli("results", "--list", "--store", str(missing))
    assert res.returncode == 1 and not missing.exists()


def test_a_file_that_is_not_a_store_is_one_line(tmp_path):
    p = tmp_path / "notes.sqlite"
    p.write_text("these are my notes, not a database\n" * 200)
    res = run_cli("results", "--store", str(p))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    (line,) = res.stderr.splitlines()
    assert "not a testbed result store" in line and str(p) in line


def test_old_stores_gain_the_owner_column_and_stay_readable(tmp_path):
    p = tmp_path / "old.sqlite"
    db = sqlite3.connect(p)
    db.executescript(OLD_SCHEMA)
    db.execute("INSERT INTO runs VALUES ('old1','s','p','h',1.0,2.0,'ok',NULL,'rev','{}')")
    db.execute("INSERT INTO runs VALUES ('old2','s','p','h',3.0,NULL,'running',NULL,'rev','{}')")
    db.commit()
    db.close()
    store = Store(p)
    assert store.has_owner
    assert [r["run_id"] for r in store.runs()] == ["old1", "old2"]
    begin(store, "new1")
    owner = json.loads(store.db.execute("SELECT owner FROM runs WHERE run_id='new1'").fetchone()[0])
    assert owner["pid"] > 0 and owner["start"] is not None and owner["boot_id"]
    # An old run without an owner or a ledger cannot be judged: it is left alone.
    assert store.reconcile_killed() == [] and store.run_info("old2")["status"] == "running"


def test_a_run_whose_process_is_gone_is_reconciled_as_killed(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    begin(store, "dead", owner=dead_owner())
    sample(store, "dead")
    begin(store, "alive")  # this process
    begin(store, "elsewhere", owner={"host": "another-machine", "pid": 1, "start": 1})
    begin(store, "rebooted", owner={**ledger.owner_record(), "boot_id": "a-boot-before-a-power-loss"})
    assert sorted(store.reconcile_killed()) == ["dead", "rebooted"]
    info = store.run_info("dead")
    assert info["status"] == "killed" and "SIGKILL" in info["reason"] and info["finished"] is not None
    assert store.run_info("alive")["status"] == "running"
    assert store.run_info("elsewhere")["status"] == "running"
    assert store.reconcile_killed() == []  # idempotent


def test_old_runs_are_judged_by_their_ledger_while_it_is_there(tmp_path, monkeypatch):
    monkeypatch.setenv("TESTBED_HOME", str(tmp_path / "home"))
    store = Store(tmp_path / "r.sqlite")
    store.has_owner = False  # as on a store that could not be migrated
    begin(store, "legacy")
    led = ledger.Ledger("legacy")
    owner = dead_owner()
    led.path.write_text(json.dumps({"op": "open", "pid": owner["pid"], "start": owner["start"]}) + "\n")
    assert store.reconcile_killed() == ["legacy"]


def test_a_store_that_cannot_be_written_still_shows_the_killed_run(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    begin(store, "dead", owner=dead_owner())
    store.db = FullDisk(store.db)
    assert store.reconcile_killed() == ["dead"]
    assert store.run_info("dead")["status"] == "killed"
    assert [r["status"] for r in store.runs()] == ["killed"]


def test_results_cli_reconciles_and_says_the_run_is_incomplete(tmp_path):
    p = tmp_path / "r.sqlite"
    store = Store(p)
    begin(store, "k1", owner=dead_owner())
    sample(store, "k1")
    store.close()
    res = run_cli("results", "k1", "--store", str(p))
    assert res.returncode == 0, res.stderr
    assert "run k1 is incomplete (killed)" in res.stdout
    res = run_cli("results", "--list", "--store", str(p))
    assert "killed" in res.stdout


def test_gc_marks_killed_runs_in_the_store(tmp_path):
    p = tmp_path / "r.sqlite"
    store = Store(p)
    begin(store, "k2", owner=dead_owner())
    store.close()
    res = run_cli("gc", "--store", str(p), env={"TESTBED_HOME": str(tmp_path / "home")})
    assert res.returncode == 0, res.stderr
    assert "run k2: marked killed" in res.stdout
    assert Store(p).run_info("k2")["status"] == "killed"


def test_committed_repetitions_and_resume_notes(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    begin(store, "r1", owner=dead_owner())
    sample(store, "r1", rep=0, params={"clients": 5, "requests": 1000})
    sample(store, "r1", rep=1, params={"requests": 1000, "clients": 5})
    sample(store, "r1", rep=2, params={"clients": 5, "requests": 1000}, status="failed")
    key = json.dumps({"clients": 5, "requests": 1000}, sort_keys=True)
    assert store.committed_repetitions("r1") == {("native", "redis", "cold-start", key, 0),
                                                  ("native", "redis", "cold-start", key, 1)}
    assert len(store.committed_repetitions("r1", statuses=("ok", "failed"))) == 3
    store.reconcile_killed()
    store.note_resumed("r1", {"suite_hash": "hash", "skipped_repetitions": 2})
    info = store.run_info("r1")
    assert info["status"] == "running" and info["finished"] is None and info["reason"] is None
    (note,) = info["provenance"]["resumed"]
    assert note["previous_status"] == "killed" and note["skipped_repetitions"] == 2
    assert store.reconcile_killed() == []  # now owned by this process
    with pytest.raises(StoreError, match="no run 'nope'"):
        store.note_resumed("nope", {})


def test_begin_run_default_owner_is_this_process(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    begin(store)
    owner = json.loads(store.db.execute("SELECT owner FROM runs").fetchone()[0])
    assert ledger.owner_gone(owner) is False
    assert owner["start"] == ledger.process_start_time(owner["pid"])
    store.end_run("r1", "ok")
    assert store.run_info("r1")["status"] == "ok"


def test_end_run_uses_the_space_reserved_at_begin_run(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    begin(store)
    assert store._reserve is not None and store._reserve.fd is not None

    class FullUntilReserveFreed(FullDisk):
        def execute(self, sql: str, *args):
            if store._reserve is not None and store._reserve.fd is not None:
                return super().execute(sql, *args)
            return self.db.execute(sql, *args)

    store.db = FullUntilReserveFreed(store.db)
    with pytest.raises(StoreError):
        sample(store)
    store.end_run("r1", "failed", "the disk filled up")
    assert store.run_info("r1")["status"] == "failed"
    assert store._reserve is None
