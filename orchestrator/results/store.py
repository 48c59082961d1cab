"""The result store: SQLite in WAL mode, one row per sample, committed as soon as it is measured.

Each sample carries its full provenance (host facts, tool versions, image digest, accelerator,
NIC, placement, suite hash, testbed revision) as JSON, so an exported row stands on its own.

Every SQLite failure (a full disk, a file that is not a database, a read-only store) becomes a
StoreError with one line. A run records its owner (host, boot, pid and start time); a run still
`running` whose owner is gone was killed, and reconcile_killed() says so in the store.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .. import ledger
from ..errors import TestbedError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    suite       TEXT NOT NULL,
    suite_path  TEXT NOT NULL,
    suite_hash  TEXT NOT NULL,
    started     REAL NOT NULL,
    finished    REAL,
    status      TEXT NOT NULL,          -- running | ok | failed | interrupted | killed
    reason      TEXT,
    testbed_rev TEXT NOT NULL,
    provenance  TEXT NOT NULL,          -- run-level JSON: host facts, tool versions
    owner       TEXT                    -- JSON: host, boot_id, pid, start of the process running it
);
CREATE TABLE IF NOT EXISTS samples (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      TEXT NOT NULL REFERENCES runs(run_id),
    measured    REAL NOT NULL,
    platform    TEXT NOT NULL,
    workload    TEXT NOT NULL,
    benchmark   TEXT NOT NULL,
    metric      TEXT NOT NULL,
    value       REAL,                   -- NULL for a failed sample
    unit        TEXT NOT NULL,
    repetition  INTEGER NOT NULL,
    params      TEXT NOT NULL,          -- JSON: sweep point and benchmark settings
    status      TEXT NOT NULL,          -- ok | failed
    reason      TEXT,
    provenance  TEXT NOT NULL           -- JSON: everything needed to trust the number
);
CREATE INDEX IF NOT EXISTS samples_run ON samples(run_id, platform, metric);
"""


@dataclass
class SampleRow:
    id: int
    run_id: str
    measured: float
    platform: str
    workload: str
    benchmark: str
    metric: str
    value: float | None
    unit: str
    repetition: int
    params: dict
    status: str
    reason: str | None
    provenance: dict

    def as_dict(self) -> dict:
        return dict(self.__dict__)


REQUIRED_PROVENANCE = ("host", "testbed_rev", "suite_hash", "image_digest")
RUN_COLUMNS = ("run_id", "suite", "suite_path", "suite_hash", "started", "finished", "status", "reason",
               "testbed_rev", "provenance")
SELECT_RUNS = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs"


def run_dict(row: tuple) -> dict:
    """A row of SELECT_RUNS as a dict, its provenance decoded."""
    info = dict(zip(RUN_COLUMNS, row))
    info["provenance"] = json.loads(info["provenance"])
    return info

INCOMPLETE = ("running", "interrupted", "killed", "failed")  # statuses of a run that did not finish every cell


class StoreError(TestbedError):
    """The result store cannot be opened, read or written; str() is one line naming the file."""


RESERVE_BYTES = 1 << 20  # room kept for recording a run's end when its file system fills up


class SpaceReserve:
    """Disk blocks held by an unnamed file beside the store while a run is open, given back so
    that end_run can still record the run's status when the file system fills up. Unnamed (the
    kernel frees it when the process dies), so a killed run leaves nothing behind."""

    def __init__(self, directory: Path, size: int = RESERVE_BYTES):
        self.fd: int | None = None
        try:
            try:
                fd = os.open(directory, os.O_TMPFILE | os.O_RDWR, 0o600)
            except (AttributeError, OSError):  # no O_TMPFILE on this file system: create, then unlink
                fd, name = tempfile.mkstemp(dir=directory, prefix=".testbed-reserve-")
                os.unlink(name)
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError:
                os.close(fd)
                return
            self.fd = fd
        except OSError:  # best effort: no reserve when there is no room for one
            self.fd = None

    def release(self) -> bool:
        """Give the blocks back; True when there were any."""
        if self.fd is None:
            return False
        os.close(self.fd)
        self.fd = None
        return True


class Store:
    def __init__(self, path: Path, *, create: bool = True):
        """Open the store at `path`, creating it unless create=False (then a missing file is a
        StoreError: reading results must not leave an empty store behind a typo)."""
        self.path = Path(path)
        self._reconciled: dict[str, str] = {}  # run_id -> reason, for runs found killed but not writable
        self._reserve: SpaceReserve | None = None
        if not create and not self.path.is_file():
            raise StoreError(f"no result store at {self.path} ("
                             f"{'it is a directory' if self.path.is_dir() else 'the file does not exist'}); check "
                             f"--store (a store is made by the first `testbed run` that writes to it)")
        existed = self.path.exists()
        with self._guard("open"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            with self._guard("open"):
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.executescript(SCHEMA)
        except StoreError:
            self.db.close()
            if not existed:  # e.g. a full disk: leave no empty store behind
                for suffix in ("", "-wal", "-shm", "-journal"):
                    Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            raise
        self.has_owner = self._migrate_owner()

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """sqlite3 errors (and OSError creating the directory) -> one-line StoreError."""
        try:
            yield
        except sqlite3.Error as exc:
            text = str(exc)
            if "disk is full" in text or "disk I/O error" in text:
                hint = "; free space on its file system or pass --store FILE on another one"
            elif "not a database" in text:
                hint = " (the file is not a testbed result store)"
            elif "readonly" in text or "unable to open" in text:
                hint = "; check the file's and its directory's permissions, or pass --store FILE"
            elif "locked" in text:
                hint = "; another process holds it; try again"
            else:
                hint = ""
            raise StoreError(f"result store {self.path}: {action}: {text}{hint}") from None
        except OSError as exc:
            raise StoreError(f"result store {self.path}: {action}: {exc.strerror or exc}") from None

    def _migrate_owner(self) -> bool:
        """Add runs.owner to stores made before it existed; False when the store cannot be altered (read-only)."""
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(runs)")}
        if "owner" in columns:
            return True
        try:
            self.db.execute("ALTER TABLE runs ADD COLUMN owner TEXT")
        except sqlite3.OperationalError:  # read-only, full, or another process added it first
            return "owner" in {row[1] for row in self.db.execute("PRAGMA table_info(runs)")}
        return True

    @classmethod
    def open_existing(cls, path: Path) -> "Store":
        """A store that must already exist (commands that only read results); one line when it does not."""
        return cls(path, create=False)

    def close(self) -> None:
        if self._reserve is not None:
            self._reserve.release()
        self.db.close()

    # --- writing ---------------------------------------------------------------------
    def begin_run(self, run_id: str, suite: str, suite_path: str, suite_hash: str, testbed_rev: str,
                  provenance: dict, owner: dict | None = None) -> None:
        """Record a run as `running`, owned by `owner` (default: this process; see ledger.owner_record)."""
        values = [run_id, suite, suite_path, suite_hash, time.time(), testbed_rev, json.dumps(provenance)]
        columns = "run_id, suite, suite_path, suite_hash, started, finished, status, reason, testbed_rev, provenance"
        marks = "?,?,?,?,?,NULL,'running',NULL,?,?"
        if self.has_owner:
            columns, marks = columns + ", owner", marks + ",?"
            values.append(json.dumps(owner or ledger.owner_record()))
        with self._guard(f"recording the start of run {run_id}"):
            self.db.execute(f"INSERT INTO runs ({columns}) VALUES ({marks})", values)
        if self._reserve is None:
            self._reserve = SpaceReserve(self.path.parent)

    def end_run(self, run_id: str, status: str, reason: str | None = None) -> None:
        """Record how a run ended. On a full file system the space reserved at begin_run is given
        back first, so a run whose samples no longer fit still gets its status."""
        def update() -> None:
            with self._guard(f"recording run {run_id} as {status}"):
                self.db.execute("UPDATE runs SET finished=?, status=?, reason=? WHERE run_id=?",
                                (time.time(), status, reason, run_id))
        try:
            update()
        except StoreError:
            if self._reserve is None or not self._reserve.release():
                raise
            update()
        finally:
            if self._reserve is not None:
                self._reserve.release()
                self._reserve = None

    def reconcile_killed(self) -> list[str]:
        """Mark `killed` every `running` run whose owner process is gone (SIGKILL, OOM, power loss).
        Runs of stores without owners fall back to the run's ledger, if it is still there; runs whose
        owner this machine cannot judge (another host) are left alone. Returns the run ids marked.
        When the store cannot be written, the verdict still shows in runs() and run_info()."""
        owner_sql = "owner" if self.has_owner else "NULL"
        with self._guard("reading runs"):
            rows = self.db.execute(f"SELECT run_id, {owner_sql} FROM runs WHERE status='running'").fetchall()
        killed = []
        for run_id, owner_json in rows:
            try:
                owner = json.loads(owner_json) if owner_json else ledger.ledger_owner(run_id)
            except json.JSONDecodeError:
                owner = ledger.ledger_owner(run_id)
            if not owner or ledger.owner_gone(owner) is not True:
                continue
            reason = (f"killed: its testbed process (pid {owner.get('pid')}) ended without recording an end "
                      f"(SIGKILL, OOM kill, crash or power loss); the samples committed before are kept")
            try:
                with self._guard(f"marking run {run_id} killed"):
                    last = self.db.execute("SELECT MAX(measured) FROM samples WHERE run_id=?", (run_id,)).fetchone()[0]
                    self.db.execute("UPDATE runs SET status='killed', reason=?, finished=COALESCE(?, started)"
                                    " WHERE run_id=? AND status='running'", (reason, last, run_id))
            except StoreError:
                self._reconciled[run_id] = reason
            killed.append(run_id)
        return killed

    def note_resumed(self, run_id: str, info: dict) -> None:
        """A later process continues `run_id` (testbed run --resume): the run is `running` again,
        owned by this process, and its provenance keeps a `resumed` list of {at, owner, **info}."""
        run = self.run_info(run_id)
        if run is None:
            raise StoreError(f"result store {self.path}: no run {run_id!r} to resume; see `testbed results --list`")
        provenance = run["provenance"]
        owner = ledger.owner_record()
        provenance.setdefault("resumed", []).append({"at": time.time(), "owner": owner,
                                                     "previous_status": run["status"], **info})
        owner_set = ", owner=?" if self.has_owner else ""
        values = [json.dumps(provenance)] + ([json.dumps(owner)] if self.has_owner else []) + [run_id]
        with self._guard(f"recording that run {run_id} resumed"):
            self.db.execute(f"UPDATE runs SET status='running', finished=NULL, reason=NULL, provenance=?{owner_set}"
                            f" WHERE run_id=?", values)
        self._reconciled.pop(run_id, None)

    def add_sample(self, run_id: str, *, platform: str, workload: str, benchmark: str, metric: str,
                   value: float | None, unit: str, repetition: int, params: dict, status: str,
                   reason: str | None, provenance: dict) -> int:
        missing = [k for k in REQUIRED_PROVENANCE if not provenance.get(k)]
        if missing:  # a number without provenance is not stored
            raise ValueError(f"sample {platform}/{workload}/{metric} lacks provenance: {', '.join(missing)}")
        if status == "ok" and value is None:
            raise ValueError("an ok sample needs a value")
        with self._guard(f"storing a {platform}/{workload}/{metric} sample of run {run_id}"):
            cur = self.db.execute(
                "INSERT INTO samples (run_id, measured, platform, workload, benchmark, metric, value, unit, repetition,"
                " params, status, reason, provenance) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, time.time(), platform, workload, benchmark, metric, value, unit, repetition,
                 json.dumps(params, sort_keys=True, default=str), status, reason,
                 json.dumps(provenance, sort_keys=True, default=str)))
        return int(cur.lastrowid or 0)  # autocommit mode: the row is durable when this returns

    # --- reading ---------------------------------------------------------------------
    def _overlay(self, run: dict) -> dict:
        """A killed run's status even when the store could not be written (see reconcile_killed)."""
        if run["status"] == "running" and run["run_id"] in self._reconciled:
            run["status"], run["reason"] = "killed", self._reconciled[run["run_id"]]
        return run

    def runs(self) -> list[dict]:
        with self._guard("reading runs"):
            cur = self.db.execute("SELECT run_id, suite, started, finished, status, reason, testbed_rev,"
                                  " (SELECT COUNT(*) FROM samples s WHERE s.run_id = r.run_id) FROM runs r"
                                  " ORDER BY started")
            rows = cur.fetchall()
        keys = ("run_id", "suite", "started", "finished", "status", "reason", "testbed_rev", "samples")
        return [self._overlay(dict(zip(keys, row))) for row in rows]

    def committed_repetitions(self, run_id: str, statuses: tuple[str, ...] = ("ok",)) -> set[tuple]:
        """{(platform, workload, benchmark, point_key, repetition)} with at least one committed sample
        of a status in `statuses`: what a resumed run (testbed run --resume) does not measure again."""
        marks = ",".join("?" * len(statuses))
        with self._guard(f"reading the samples of run {run_id}"):
            # The runner records the sweep point itself as provenance.point_key (params hold more than the
            # point: thread counts, durations); samples from before that are keyed by their params.
            rows = self.db.execute(f"SELECT DISTINCT platform, workload, benchmark, COALESCE(json_extract(provenance,"
                                   f" '$.point_key'), params), repetition FROM samples"
                                   f" WHERE run_id=? AND status IN ({marks})", (run_id, *statuses)).fetchall()
        return {tuple(r) for r in rows}

    def latest_run(self) -> str | None:
        row = self.db.execute("SELECT run_id FROM runs ORDER BY started DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def run_info(self, run_id: str) -> dict | None:
        row = self.db.execute(f"{SELECT_RUNS} WHERE run_id=?", (run_id,)).fetchone()
        return self._overlay(run_dict(row)) if row else None

    def samples(self, run_id: str) -> Iterator[SampleRow]:
        cur = self.db.execute("SELECT id, run_id, measured, platform, workload, benchmark, metric, value, unit,"
                              " repetition, params, status, reason, provenance FROM samples WHERE run_id=? ORDER BY id",
                              (run_id,))
        for row in cur:
            r = list(row)
            r[10] = json.loads(r[10])
            r[13] = json.loads(r[13])
            yield SampleRow(*r)

    # --- collected runs (testbed collect) ------------------------------------------------
    def insert_collected(self, run: dict, samples: list[tuple]) -> None:
        """A finished run copied from another host's store, under its collected id, with its samples
        (run_id, measured, platform, workload, benchmark, metric, value, unit, repetition, params,
        status, reason, provenance) in one transaction: a run is merged whole or not at all."""
        with self._guard(f"merging collected run {run['run_id']}"):
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.execute(f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({','.join('?' * len(RUN_COLUMNS))})",
                                [json.dumps(run[c]) if c == "provenance" else run[c] for c in RUN_COLUMNS])
                self.db.executemany("INSERT INTO samples (run_id, measured, platform, workload, benchmark, metric,"
                                    " value, unit, repetition, params, status, reason, provenance)"
                                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", samples)
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise


# --- history queries (nightly change-point detection, orchestrator/results/history.py) -------
# Kept in one block, additive: they read what Store writes and change nothing.

NIGHT_STATUSES = ("ok", "failed")  # a running, interrupted or killed run is not a night


def suite_runs(store: Store, suite: str, statuses: tuple[str, ...] = NIGHT_STATUSES) -> list[dict]:
    """Every run of `suite` whose status is one of `statuses`, oldest first, with its provenance."""
    marks = ",".join("?" * len(statuses))
    cur = store.db.execute(f"{SELECT_RUNS} WHERE suite=? AND status IN ({marks}) ORDER BY started, run_id",
                           (suite, *statuses))
    return [run_dict(row) for row in cur.fetchall()]


def suite_names(store: Store) -> list[str]:
    """The suites the store has runs of, by name."""
    return [r[0] for r in store.db.execute("SELECT DISTINCT suite FROM runs ORDER BY suite").fetchall()]


def integrity_problems(store: Store) -> list[str]:
    """What SQLite's integrity check finds wrong with the store file; empty when it is sound."""
    rows = [r[0] for r in store.db.execute("PRAGMA integrity_check").fetchall()]
    return [] if rows == ["ok"] else rows
