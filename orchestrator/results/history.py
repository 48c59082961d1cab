"""Nightly series out of the store: one observation per run and series.

A series is (host, suite, workload, benchmark, metric, sweep point, platform). A night is one run
of the suite with status ok or failed (a running, interrupted or killed run is not a night); its
observation is the median of the series' ok samples in that run, with the spread, the raw samples
(for the confirmation test), the run's start time and the series' configuration fingerprint.
"""

from __future__ import annotations

import math
import sqlite3
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from scipy import stats

from ..errors import DataError
from .fingerprint import Fingerprint, context, fingerprint
from .summary import point_text, varying_keys
from .store import SampleRow, Store, StoreError, integrity_problems, suite_names, suite_runs


@dataclass(frozen=True)
class SeriesKey:
    host: str
    suite: str
    workload: str
    benchmark: str
    metric: str
    point: str
    platform: str

    @property
    def label(self) -> str:
        """host suite platform workload benchmark metric [point], as lines and JUnit names show it."""
        return " ".join(x for x in (self.host, self.suite, self.platform, self.workload, self.benchmark, self.metric,
                                    self.point) if x)


@dataclass
class Night:
    run_id: str
    started: float                  # the run's start, seconds since the epoch
    median: float
    samples: list[float]
    failed: int                     # failed samples of this series in the run
    fingerprint: Fingerprint
    context: dict[str, str]         # provenance beside the fingerprint (testbed revision, placement ...)
    ci: tuple[float, float] | None  # distribution-free CI of the median (order statistics)
    ci_level: float | None          # its exact coverage (below 95% with fewer than 6 samples)

    @property
    def cv(self) -> float | None:
        if len(self.samples) < 2:
            return None
        mean = statistics.fmean(self.samples)
        return statistics.stdev(self.samples) / abs(mean) if mean else None


@dataclass
class Series:
    key: SeriesKey
    unit: str
    nights: list[Night] = field(default_factory=list)
    unmeasured: list[str] = field(default_factory=list)  # runs where every sample of the series failed

    def configuration_segments(self) -> list[list[Night]]:
        """The nights split where the fingerprint changes, oldest first."""
        out: list[list[Night]] = []
        for night in self.nights:
            if out and out[-1][-1].fingerprint == night.fingerprint:
                out[-1].append(night)
            else:
                out.append([night])
        return out


def median_ci(values: list[float], level: float = 0.95) -> tuple[tuple[float, float], float] | None:
    """CI of the median from order statistics (exact binomial coverage, no distribution assumed).

    The widest-needed symmetric pair (x_(k), x_(n-k+1)) whose coverage reaches `level`; with too
    few samples to reach it, (min, max) and the coverage it really has.
    """
    n = len(values)
    if n < 2:
        return None
    s = sorted(values)
    best_k = 1
    for k in range(1, n // 2 + 1):
        if 1 - 2 * stats.binom.cdf(k - 1, n, 0.5) >= level:
            best_k = k
        else:
            break
    coverage = float(1 - 2 * stats.binom.cdf(best_k - 1, n, 0.5))
    return (s[best_k - 1], s[n - best_k]), coverage


def open_store(path: Path) -> Store:
    """Open an existing store for reading history; a missing or corrupted file is one DataError."""
    if not path.is_file():
        raise DataError(f"{path}: no result store there; run `testbed run SUITE --store {path}` first")
    try:
        store = Store(path, create=False)
        problems = integrity_problems(store)
    except (sqlite3.DatabaseError, StoreError) as exc:
        raise DataError(f"{path}: result store is corrupted ({exc}); restore it from a backup or start a new "
                        f"one with --store") from None
    if problems:
        store.close()
        raise DataError(f"{path}: result store failed SQLite's integrity check ({problems[0]}); restore it from "
                        f"a backup or start a new one with --store")
    return store


def _host(row: SampleRow) -> str:
    placement = row.provenance.get("placement") or {}
    host = row.provenance.get("host") or {}
    return str(placement.get("server_host") or (host.get("host") if isinstance(host, dict) else host) or "localhost")


def extract_series(store: Store, suite: str, host: str | None = None) -> tuple[list[Series], list[dict]]:
    """Every series of `suite` (optionally on one host) with one night per run, and the runs (oldest first).

    Raises DataError when the store has no night of the suite, or none on `host`.
    """
    try:
        runs = suite_runs(store, suite)
        rows = {r["run_id"]: list(store.samples(r["run_id"])) for r in runs}
    except (sqlite3.DatabaseError, ValueError) as exc:  # ValueError: a provenance that is no JSON
        raise DataError(f"{store.path}: result store is corrupted ({exc}); restore it from a backup") from None
    if not runs:
        known = suite_names(store)
        hint = f"; suites with runs: {', '.join(known)}" if known else ""
        raise DataError(f"suite {suite!r}: no history in {store.path} (no finished run){hint}")
    hosts = sorted({_host(r) for rs in rows.values() for r in rs})
    if host is not None and host not in hosts:
        raise DataError(f"--host {host}: suite {suite!r} has no runs on that host in {store.path}; hosts: "
                        f"{', '.join(hosts) or 'none'}")
    every = [r for rs in rows.values() for r in rs]
    varying = varying_keys(every)
    series: dict[SeriesKey, Series] = {}
    for run in runs:
        grouped: dict[SeriesKey, list[SampleRow]] = defaultdict(list)
        for r in rows[run["run_id"]]:
            if host is not None and _host(r) != host:
                continue
            point = point_text(r.params, varying.get((r.workload, r.benchmark, r.metric), set()))
            grouped[SeriesKey(_host(r), suite, r.workload, r.benchmark, r.metric, point, r.platform)].append(r)
        for key, samples in grouped.items():
            s = series.setdefault(key, Series(key, samples[0].unit))
            ok = [r.value for r in samples if r.status == "ok" and r.value is not None and math.isfinite(r.value)]
            if not ok:
                s.unmeasured.append(run["run_id"])
                continue
            ci = median_ci(ok)
            s.nights.append(Night(run["run_id"], run["started"], statistics.median(ok), ok, len(samples) - len(ok),
                                  fingerprint(run["provenance"], [r.provenance for r in samples]),
                                  context(samples[0].provenance), ci[0] if ci else None, ci[1] if ci else None))
    return list(series.values()), runs
