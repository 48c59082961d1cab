"""Tables and exports of a run's samples: per platform and metric, median / p95 / n and the 95% CI."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field

from .stats import WIDE_CV, Summary, direction, intervals_overlap, summarize, too_good
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
    flags: dict[str, list[str]] = field(default_factory=dict)  # platform -> short flags shown beside its value
    notes: list[str] = field(default_factory=list)  # warning lines about comparing the platforms

    @property
    def label(self) -> str:
        return f"{self.workload} {self.benchmark} {self.metric}" + (f" {self.params}" if self.params else "")


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
    native = [p for p in platforms if _kind(rows, p) == "native"]
    groups = []
    for key in order:
        per = {p: summarize(values[key].get(p, []), len(failed[key].get(p, []))) for p in platforms
               if p in values[key] or p in failed[key]}
        g = Group(*key, per, {p: v for p, v in failed[key].items()})
        assess(g, native[0] if native else None)
        groups.append(g)
    return groups


def _kind(rows: list[SampleRow], platform: str) -> str | None:
    for r in rows:
        if r.platform == platform:
            return r.provenance.get("platform_kind") or platform
    return None


def assess(g: Group, native: str | None) -> None:
    """Flag what must not be over-read: a wide spread, platforms whose 95% CIs overlap, and
    throughput far beyond native on the same host and run ("too good to be true")."""
    measured = {p: s for p, s in g.per_platform.items() if s.n > 0}
    for p, s in measured.items():
        if s.wide:
            g.flags.setdefault(p, []).append("wide")
    problems = []
    wide = [p for p, s in measured.items() if s.wide]
    if wide:
        problems.append(f"CV above {WIDE_CV:.0%} on {', '.join(wide)}")
    names = list(measured)
    overlapping = [f"{a}~{b}" for i, a in enumerate(names) for b in names[i + 1:]
                   if intervals_overlap(measured[a], measured[b])]
    if overlapping and direction(g.unit):
        problems.append(f"95% CIs overlap for {', '.join(overlapping)}")
    if problems:
        g.notes.append(f"{g.label}: {'; '.join(problems)}: too much spread to rank these platforms on this metric")
    if native and native in measured:
        for p, s in measured.items():
            if p == native:
                continue
            r = too_good(s, measured[native], g.unit)
            if r is not None:
                g.flags.setdefault(p, []).append(f"too good? {r:.1f}x native")
                g.notes.append(f"{g.label}: {p} is {r:.1f}x native ({native}) on the same host and run; too good "
                               f"to be true until explained (check what was measured, not celebrated)")


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
                        "flags": g.flags.get(platform, []), "failures": g.failures.get(platform, [])[:3]})
    return out


def comparison_notes(store: Store, run_id: str) -> list[str]:
    """The warning lines of a run's comparison, in table order."""
    return [n for g in group_samples(list(store.samples(run_id))) for n in g.notes]


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
