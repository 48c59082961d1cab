"""Synthetic nightly histories in a real Store, for the history / change-point / nightly tests.

Rows carry the provenance the runner writes (host facts under the run's `server`, tool versions
per sample under `tools`, image digest, suite hash, placement, testbed revision), so the code
under test reads them exactly as it reads a real run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from orchestrator.results.store import Store

DAY = 86400.0
T0 = 1_760_000_000.0  # a fixed first night


@dataclass(frozen=True)
class Metric:
    platform: str
    workload: str
    benchmark: str
    metric: str
    unit: str
    level: float
    params: tuple[tuple[str, object], ...] = ()


DEFAULT_METRICS = (
    Metric("native", "redis", "cold-start", "startup_ms", "ms", 20.0, (("end_point", "first correct response"),)),
    Metric("runc", "redis", "cold-start", "startup_ms", "ms", 45.0, (("end_point", "first correct response"),)),
    Metric("native", "redis", "set", "requests_per_s", "req/s", 70000.0, (("clients", 50), ("test", "SET"))),
    Metric("runc", "redis", "set", "requests_per_s", "req/s", 68000.0, (("clients", 50), ("test", "SET"))),
    Metric("native", "redis", "set", "latency_p50_ms", "ms", 0.4, (("clients", 50), ("test", "SET"))),
)


@dataclass
class Lab:
    """The configuration a night ran on; change a field to make a configuration change."""

    kernel: str = "6.1.0-18-amd64"
    tools: dict = field(default_factory=lambda: {"redis-server": "7.0.15", "runc": "1.1.5",
                                                 "redis-benchmark": "7.0.15"})
    host: str = "localhost"
    testbed_rev: str = "abc123"


def seed_night(store: Store, night: int, *, suite: str = "nightly", lab: Lab | None = None,
               factors: dict[str, float] | None = None, metrics: tuple[Metric, ...] = DEFAULT_METRICS,
               reps: int = 5, cv: float = 0.02, drift: float = 0.01, seed: int = 0, status: str = "ok",
               failed: set[str] | None = None) -> str:
    """One run of `suite` at T0 + night days; `factors` multiplies a metric ("platform/metric") that night."""
    lab = lab or Lab()
    rng = random.Random(seed * 100_003 + night)
    run_id = f"n{night:03d}{'' if lab.host == 'localhost' else lab.host}"
    server = {"host": lab.host, "cpu_model": "Test CPU @ 2.0GHz", "cores": 2, "cpu_threads": 2, "cpu_virt": "vmx",
              "memory_mb": 24000, "kernel": lab.kernel, "arch": "x86_64", "os": "Debian GNU/Linux 12 (bookworm)",
              "hostname": lab.host}
    store.begin_run(run_id, suite, f"suites/{suite}.yaml", "suitehash1", lab.testbed_rev,
                    {"server": server, "client": None, "testbed_rev": lab.testbed_rev})
    store.db.execute("UPDATE runs SET started=? WHERE run_id=?", (T0 + night * DAY, run_id))
    for m in metrics:
        name = f"{m.platform}/{m.metric}"
        level = m.level * (factors or {}).get(name, 1.0) * (1 + rng.gauss(0, drift))
        prov = {"host": server, "testbed_rev": lab.testbed_rev, "suite_hash": "suitehash1", "suite": suite,
                "image_digest": f"sha256:{m.platform}-image", "platform_kind": m.platform, "tools": dict(lab.tools),
                "placement": {"server_host": lab.host, "server_cpus": "0", "client_host": lab.host,
                              "client_cpus": "1"}}
        for rep in range(reps):
            bad = failed is not None and name in failed
            store.add_sample(run_id, platform=m.platform, workload=m.workload, benchmark=m.benchmark,
                             metric=m.metric, value=None if bad else level * (1 + rng.gauss(0, cv)), unit=m.unit,
                             repetition=rep, params=dict(m.params), status="failed" if bad else "ok",
                             reason="timeout" if bad else None, provenance=prov)
    store.end_run(run_id, status)
    return run_id


def seed_history(store: Store, nights: int, **kw) -> list[str]:
    return [seed_night(store, i, **kw) for i in range(nights)]
