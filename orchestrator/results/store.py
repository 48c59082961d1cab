"""The result store: SQLite in WAL mode, one row per sample, committed as soon as it is measured.

Each sample carries its full provenance (host facts, tool versions, image digest, accelerator,
NIC, placement, suite hash, testbed revision) as JSON, so an exported row stands on its own.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    suite       TEXT NOT NULL,
    suite_path  TEXT NOT NULL,
    suite_hash  TEXT NOT NULL,
    started     REAL NOT NULL,
    finished    REAL,
    status      TEXT NOT NULL,          -- running | ok | failed | interrupted
    reason      TEXT,
    testbed_rev TEXT NOT NULL,
    provenance  TEXT NOT NULL           -- run-level JSON: host facts, tool versions
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


class Store:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # --- writing ---------------------------------------------------------------------
    def begin_run(self, run_id: str, suite: str, suite_path: str, suite_hash: str, testbed_rev: str,
                  provenance: dict) -> None:
        self.db.execute("INSERT INTO runs VALUES (?,?,?,?,?,NULL,'running',NULL,?,?)",
                        (run_id, suite, suite_path, suite_hash, time.time(), testbed_rev, json.dumps(provenance)))

    def end_run(self, run_id: str, status: str, reason: str | None = None) -> None:
        self.db.execute("UPDATE runs SET finished=?, status=?, reason=? WHERE run_id=?",
                        (time.time(), status, reason, run_id))

    def add_sample(self, run_id: str, *, platform: str, workload: str, benchmark: str, metric: str,
                   value: float | None, unit: str, repetition: int, params: dict, status: str,
                   reason: str | None, provenance: dict) -> int:
        missing = [k for k in REQUIRED_PROVENANCE if not provenance.get(k)]
        if missing:  # a number without provenance is not stored
            raise ValueError(f"sample {platform}/{workload}/{metric} lacks provenance: {', '.join(missing)}")
        if status == "ok" and value is None:
            raise ValueError("an ok sample needs a value")
        cur = self.db.execute(
            "INSERT INTO samples (run_id, measured, platform, workload, benchmark, metric, value, unit, repetition,"
            " params, status, reason, provenance) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (run_id, time.time(), platform, workload, benchmark, metric, value, unit, repetition,
             json.dumps(params, sort_keys=True, default=str), status, reason,
             json.dumps(provenance, sort_keys=True, default=str)))
        return cur.lastrowid  # autocommit mode: the row is durable when this returns

    # --- reading ---------------------------------------------------------------------
    def runs(self) -> list[dict]:
        cur = self.db.execute("SELECT run_id, suite, started, finished, status, reason, testbed_rev,"
                              " (SELECT COUNT(*) FROM samples s WHERE s.run_id = r.run_id) FROM runs r ORDER BY started")
        keys = ("run_id", "suite", "started", "finished", "status", "reason", "testbed_rev", "samples")
        return [dict(zip(keys, row)) for row in cur.fetchall()]

    def latest_run(self) -> str | None:
        row = self.db.execute("SELECT run_id FROM runs ORDER BY started DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def run_info(self, run_id: str) -> dict | None:
        row = self.db.execute("SELECT run_id, suite, suite_path, suite_hash, started, finished, status, reason,"
                              " testbed_rev, provenance FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if not row:
            return None
        keys = ("run_id", "suite", "suite_path", "suite_hash", "started", "finished", "status", "reason",
                "testbed_rev", "provenance")
        info = dict(zip(keys, row))
        info["provenance"] = json.loads(info["provenance"])
        return info

    def samples(self, run_id: str) -> Iterator[SampleRow]:
        cur = self.db.execute("SELECT id, run_id, measured, platform, workload, benchmark, metric, value, unit,"
                              " repetition, params, status, reason, provenance FROM samples WHERE run_id=? ORDER BY id",
                              (run_id,))
        for row in cur:
            r = list(row)
            r[10] = json.loads(r[10])
            r[13] = json.loads(r[13])
            yield SampleRow(*r)


# --- history queries (nightly change-point detection, orchestrator/results/history.py) -------
# Kept in one block, additive: they read what Store writes and change nothing.

NIGHT_STATUSES = ("ok", "failed")  # a running, interrupted or killed run is not a night


def suite_runs(store: Store, suite: str, statuses: tuple[str, ...] = NIGHT_STATUSES) -> list[dict]:
    """Every run of `suite` whose status is one of `statuses`, oldest first, with its provenance."""
    marks = ",".join("?" * len(statuses))
    cur = store.db.execute(
        "SELECT run_id, suite, suite_path, suite_hash, started, finished, status, reason, testbed_rev, provenance"
        f" FROM runs WHERE suite=? AND status IN ({marks}) ORDER BY started, run_id", (suite, *statuses))
    keys = ("run_id", "suite", "suite_path", "suite_hash", "started", "finished", "status", "reason",
            "testbed_rev", "provenance")
    out = []
    for row in cur.fetchall():
        info = dict(zip(keys, row))
        info["provenance"] = json.loads(info["provenance"])
        out.append(info)
    return out


def suite_names(store: Store) -> list[str]:
    """The suites the store has runs of, by name."""
    return [r[0] for r in store.db.execute("SELECT DISTINCT suite FROM runs ORDER BY suite").fetchall()]


def integrity_problems(store: Store) -> list[str]:
    """What SQLite's integrity check finds wrong with the store file; empty when it is sound."""
    rows = [r[0] for r in store.db.execute("PRAGMA integrity_check").fetchall()]
    return [] if rows == ["ok"] else rows
