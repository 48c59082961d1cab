"""Tables and exports of a run's samples: per platform and metric, median / p95 / n and the 95% CI."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass

from .stats import Summary, summarize
from .store import SampleRow, Store

# Metrics whose smaller values are better, for the "vs best" hint in tables.
LOWER_IS_BETTER_UNITS = {"ms", "us", "ns", "s"}


@dataclass
class Group:
    workload: str
    benchmark: str
    metric: str
    unit: str
    params: str  # sweep point, rendered
    per_platform: dict[str, Summary]
    failures: dict[str, list[str]]


ALWAYS_SHOWN = ("test",)  # a parameter that names what was measured is shown even when it does not vary


def _varying_keys(rows: list[SampleRow]) -> dict[tuple[str, str, str], set[str]]:
    """Per (workload, benchmark, metric): the params whose value differs between samples (the sweep)."""
    seen: dict[tuple[str, str, str], dict[str, set]] = defaultdict(lambda: defaultdict(set))
    for r in rows:
        for k, v in r.params.items():
            seen[(r.workload, r.benchmark, r.metric)][k].add(json.dumps(v, sort_keys=True, default=str))
    return {wb: {k for k, vals in keys.items() if len(vals) > 1 or k in ALWAYS_SHOWN} for wb, keys in seen.items()}


def _point(params: dict, keys: set[str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(params.items()) if k in keys)


def group_samples(rows: list[SampleRow]) -> list[Group]:
    varying = _varying_keys(rows)
    values: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    failed: dict[tuple, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    order: dict[tuple, None] = {}
    platforms: dict[str, None] = {}
    for r in rows:
        key = (r.workload, r.benchmark, r.metric, r.unit, _point(r.params, varying.get((r.workload, r.benchmark, r.metric), set())))
        order.setdefault(key, None)
        platforms.setdefault(r.platform, None)
        if r.status == "ok" and r.value is not None:
            values[key][r.platform].append(r.value)
        else:
            failed[key][r.platform].append(r.reason or "failed")
    groups = []
    for key in order:
        per = {p: summarize(values[key].get(p, []), len(failed[key].get(p, []))) for p in platforms
               if p in values[key] or p in failed[key]}
        groups.append(Group(*key, per, {p: v for p, v in failed[key].items()}))
    return groups


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def summary_rows(store: Store, run_id: str) -> list[dict]:
    out = []
    for g in group_samples(list(store.samples(run_id))):
        for platform, s in g.per_platform.items():
            out.append({"workload": g.workload, "benchmark": g.benchmark, "metric": g.metric, "unit": g.unit,
                        "point": g.params, "platform": platform, **s.as_dict(),
                        "failures": g.failures.get(platform, [])[:3]})
    return out


def export(store: Store, run_id: str, fmt_name: str) -> str:
    """Every sample with its provenance, as JSON lines-in-an-array or flat CSV."""
    rows = [r.as_dict() for r in store.samples(run_id)]
    info = store.run_info(run_id)
    if fmt_name == "json":
        return json.dumps({"run": info, "samples": rows}, indent=1, default=str)
    buf = io.StringIO()
    fields = ["id", "run_id", "measured", "platform", "workload", "benchmark", "metric", "value", "unit",
              "repetition", "status", "reason", "params", "provenance"]
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    for r in rows:
        w.writerow({**r, "params": json.dumps(r["params"], sort_keys=True),
                    "provenance": json.dumps(r["provenance"], sort_keys=True)})
    return buf.getvalue()
