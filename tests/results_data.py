"""Synthetic result stores for the statistics, flag, compare and report tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from orchestrator.results.store import Store

PROV = {"host": {"cpu_model": "x", "kernel": "6.1.0-test"}, "testbed_rev": "abc", "suite_hash": "h",
        "image_digest": "d"}


def open_store(path: Path) -> Store:
    return Store(path)


def begin(store: Store, run_id: str, suite: str = "s", *, suite_hash: str = "h", rev: str = "abc",
          provenance: dict | None = None, status: str = "ok") -> None:
    store.begin_run(run_id, suite, f"{suite}.yaml", suite_hash, rev,
                    provenance or {"server": {"hostname": "labhost", "kernel": "6.1.0-test"}})
    store.end_run(run_id, status)


def add(store: Store, run_id: str, platform: str, metric: str, values: Iterable[float | None], *,
        workload: str = "w", benchmark: str = "b", unit: str = "req/s", params: dict | None = None,
        kind: str | None = None, extra_prov: dict | None = None, per_rep_prov: list[dict] | None = None,
        platform_kind: str | None = None) -> None:
    for i, v in enumerate(values):
        prov: dict[str, Any] = {**PROV, "platform_kind": platform_kind or platform,
                                "benchmark_kind": kind or benchmark, **(extra_prov or {})}
        if per_rep_prov:
            prov.update(per_rep_prov[i])
        store.add_sample(run_id, platform=platform, workload=workload, benchmark=benchmark, metric=metric, value=v,
                         unit=unit, repetition=i, params=dict(params or {}),
                         status="ok" if v is not None else "failed", reason=None if v is not None else "boom",
                         provenance=prov)


BASE = [100.0, 101.0, 99.0, 100.5, 99.5, 100.2]


def scaled(f: float) -> list[float]:
    return [v * f for v in BASE]


def compare_store(path: Path) -> Store:
    """Runs A and B of suite `quick` (B: vm halved and slower, runc faster, startup the same, a count
    higher, a metric only in B, gvisor with n=3) and run C of another suite."""
    s = open_store(path)
    begin(s, "A", "quick")
    begin(s, "B", "quick", provenance={"server": {"hostname": "labhost", "kernel": "6.1.0-other"}})
    for run, f_rps, f_lat, f_same, errs in (("A", 1.0, 1.0, 1.0, 0.0), ("B", 0.5, 2.0, 1.001, 3.0)):
        prov = {"accel": "kvm" if run == "A" else "tcg", "tools": {"redis-benchmark": f"7.0.{run}"}}
        add(s, run, "vm", "requests_per_s", scaled(f_rps), extra_prov=prov)  # halved: slower
        add(s, run, "vm", "latency_avg_ms", scaled(f_lat), unit="ms", extra_prov=prov)  # doubled: slower
        add(s, run, "vm", "startup_ms", [v * f_same + (i % 2) for i, v in enumerate(BASE)], unit="ms",
            extra_prov=prov)  # the same: no significant change
        add(s, run, "vm", "get_misses", [errs + d for d in (0, 1, 0, 1, 0, 1)], unit="count", extra_prov=prov)
    add(s, "B", "vm", "transactions_per_s", scaled(1.0), unit="trans/s")  # only in B
    add(s, "A", "runc", "requests_per_s", scaled(1.0))
    add(s, "B", "runc", "requests_per_s", scaled(1.6))  # faster
    add(s, "A", "gvisor", "requests_per_s", [100.0, 101.0, 99.0])  # n=3 each side
    add(s, "B", "gvisor", "requests_per_s", [50.0, 51.0, 49.0])
    begin(s, "C", "other-suite")
    add(s, "C", "vm", "requests_per_s", scaled(1.0))
    return s
