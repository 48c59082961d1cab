"""A run's samples as groups: per (workload, benchmark, metric, point), per platform, a Summary,
the ranking of the platforms, and the flags that say what must not be over-read.

This is the one place tables, exports, the HTML report and `testbed compare` get their numbers.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

from . import flags as flagging
from .stats import Ranking, Summary, direction, rank, summarize
from .store import SampleRow

ALWAYS_SHOWN = ("test",)  # a parameter that names what was measured is shown even when it does not vary
HEADLINE_PREFIXES = ("startup_ms", "requests_per_s", "throughput", "transactions_per_s", "latency_p99", "ops_per_s",
                     "ns_per_call", "cell", "instance")  # latency_p99 covers latency_p99_us/_ms/_le_us


def is_headline(metric: str) -> bool:
    """The metrics the end-of-run table and the report's figures show; tables of `testbed results` show all."""
    return metric.startswith(HEADLINE_PREFIXES)


@dataclass
class Group:
    workload: str
    benchmark: str
    metric: str
    unit: str
    point: dict[str, Any]  # the sweep point: only the parameters that vary (and `test`)
    benchmark_kind: str | None
    per_platform: dict[str, Summary]
    samples: dict[str, list[SampleRow]]  # ok samples per platform, in store order
    failures: dict[str, list[str]]
    ranking: Ranking | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def point_label(self) -> str:
        return point_text(self.point, set(self.point))

    @property
    def label(self) -> str:
        return f"{self.workload} {self.benchmark} {self.metric}" + (f" {self.point_label}" if self.point else "")

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.workload, self.benchmark, self.metric, self.point_label

    def values(self, platform: str) -> list[float]:
        return [r.value for r in self.samples.get(platform, []) if r.value is not None]

    def flags(self, platform: str) -> list[flagging.Flag]:
        s = self.per_platform.get(platform)
        return s.flags if s else []


def point_text(params: dict, keys: set[str]) -> str:
    """A sweep point as tables show it: `clients=50 requests=20000`, the varying keys only."""
    return " ".join(f"{k}={v}" for k, v in sorted(params.items()) if k in keys)


def varying_keys(rows: Iterable[SampleRow]) -> dict[tuple[str, str, str], set[str]]:
    """Per (workload, benchmark, metric): the params whose value differs between samples (the sweep)."""
    seen: dict[tuple[str, str, str], dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for r in rows:
        for k, v in r.params.items():
            seen[(r.workload, r.benchmark, r.metric)][k].add(json.dumps(v, sort_keys=True, default=str))
    return {wbm: {k for k, vals in keys.items() if len(vals) > 1 or k in ALWAYS_SHOWN} for wbm, keys in seen.items()}


def platform_kinds(rows: Iterable[SampleRow]) -> dict[str, str]:
    kinds: dict[str, str] = {}
    for r in rows:
        kinds.setdefault(r.platform, r.provenance.get("platform_kind") or r.platform)
    return kinds


def platform_labels(rows: Iterable[SampleRow]) -> dict[str, str]:
    """Platform names as tables show them: a VM's accelerator beside its name, e.g. `linux-vm (kvm)`."""
    accel: dict[str, set[str]] = defaultdict(set)
    order: dict[str, None] = {}
    for r in rows:
        order.setdefault(r.platform, None)
        if r.provenance.get("accel"):
            accel[r.platform].add(str(r.provenance["accel"]))
    return {p: f"{p} ({'/'.join(sorted(accel[p]))})" if accel[p] else p for p in order}


def summarize_rows(rows: list[SampleRow], *, varying: dict[tuple[str, str, str], set[str]] | None = None) -> list[Group]:
    """Groups in store order with summaries, rankings and every flag. `varying` lets two runs share
    one set of sweep keys (so their points line up in a comparison)."""
    varying = varying if varying is not None else varying_keys(rows)
    groups: dict[tuple, Group] = {}
    for r in rows:
        keys = varying.get((r.workload, r.benchmark, r.metric), set())
        point = {k: v for k, v in sorted(r.params.items()) if k in keys}
        gkey = (r.workload, r.benchmark, r.metric, r.unit, json.dumps(point, sort_keys=True, default=str))
        g = groups.get(gkey)
        if g is None:
            g = groups[gkey] = Group(r.workload, r.benchmark, r.metric, r.unit, point,
                                     r.provenance.get("benchmark_kind"), {}, {}, {})
        if r.status == "ok" and r.value is not None:
            g.samples.setdefault(r.platform, []).append(r)
        else:
            g.failures.setdefault(r.platform, []).append(r.reason or "failed")
    out = list(groups.values())
    for g in out:
        for p in dict.fromkeys([*g.samples, *g.failures]):
            g.per_platform[p] = summarize(g.values(p), len(g.failures.get(p, [])))
        d = direction(g.unit)
        if d is not None:
            g.ranking = rank({p: g.values(p) for p in g.per_platform}, d)
    flagging.assess(out, flagging.RunIndex(rows), platform_kinds(rows))
    for g in out:
        g.notes.extend(flagging.ranking_notes(g))
    return out


def groups_by_metric(groups: list[Group]) -> dict[tuple[str, str, str], list[Group]]:
    """(workload, benchmark, metric) -> its groups, one per sweep point, in store order."""
    out: dict[tuple[str, str, str], list[Group]] = {}
    for g in groups:
        out.setdefault((g.workload, g.benchmark, g.metric), []).append(g)
    return out


def summary_records(groups: list[Group], labels: dict[str, str] | None = None) -> list[dict]:
    """The summary table as flat records (for JSON/CSV export and the HTML report)."""
    out = []
    for g in groups:
        for platform, s in g.per_platform.items():
            tail_name, tail = s.tail()
            out.append({"workload": g.workload, "benchmark": g.benchmark, "metric": g.metric, "unit": g.unit,
                        "point": g.point_label, "platform": platform,
                        "platform_label": (labels or {}).get(platform, platform), **s.as_dict(),
                        "tail_name": tail_name, "tail": tail, "flag_names": s.flag_names(),
                        "failures": g.failures.get(platform, [])[:3]})
    return out
