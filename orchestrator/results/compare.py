"""`testbed compare RUN_A RUN_B`: per workload/benchmark/metric/point/platform, did B change?

Each row has both medians, the change of B against A in % with its bootstrap 95% CI (the ratio of
medians, resampled on the log scale), the Mann-Whitney U p-value, the p-value adjusted with
Benjamini-Hochberg over every row of the comparison (many metrics are compared at once: the
false-discovery rate is what can be controlled), and a verdict decided by that adjusted p-value.
Above the rows: what differs in the provenance of the two runs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from ..errors import ConfigError, TestbedError
from .stats import ALPHA, MWU_TEST, benjamini_hochberg, direction, mann_whitney_many, ratio_ci
from .store import SampleRow, Store
from .summary import Group, summarize_rows, varying_keys

CORRECTION = "Benjamini-Hochberg over every compared row"
FASTER, SLOWER, NO_CHANGE, HIGHER, LOWER, NOT_COMPARABLE = (
    "faster", "slower", "no significant change", "higher", "lower", "not comparable")


@dataclass
class ComparisonRow:
    workload: str
    benchmark: str
    metric: str
    unit: str
    point: str
    platform: str
    n_a: int
    n_b: int
    median_a: float | None
    median_b: float | None
    change_pct: float | None  # (median_b / median_a - 1) * 100
    ci_low_pct: float | None
    ci_high_pct: float | None
    p: float | None
    p_adjusted: float | None
    verdict: str
    why: str | None = None  # for `not comparable` and missing intervals

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Comparison:
    run_a: str
    run_b: str
    suite_a: str
    suite_b: str
    provenance_diffs: list[tuple[str, str, str]]  # (what, in A, in B)
    rows: list[ComparisonRow]
    test: str = MWU_TEST
    correction: str = CORRECTION
    alpha: float = ALPHA
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.verdict] = out.get(r.verdict, 0) + 1
        return out

    def as_dict(self) -> dict:
        return {"run_a": self.run_a, "run_b": self.run_b, "suite_a": self.suite_a, "suite_b": self.suite_b,
                "test": self.test, "correction": self.correction, "alpha": self.alpha,
                "provenance_diffs": [{"what": w, "a": a, "b": b} for w, a, b in self.provenance_diffs],
                "rows": [r.as_dict() for r in self.rows], "notes": self.notes}


def verdict(unit: str, change: float, significant: bool) -> str:
    if not significant or change == 0:
        return NO_CHANGE
    d = direction(unit)
    if d is None:
        return HIGHER if change > 0 else LOWER
    return FASTER if (change > 0) == (d == "higher") else SLOWER


def compare_groups(a: list[Group], b: list[Group], *, alpha: float = ALPHA) -> list[ComparisonRow]:
    """Rows for every (group, platform) of either side; B is compared against A."""
    by_key_a = {g.key: g for g in a}
    by_key_b = {g.key: g for g in b}
    keys = list(dict.fromkeys([*by_key_a, *by_key_b]))
    rows: list[ComparisonRow] = []
    samples: list[tuple[list[float], list[float]]] = []
    for key in keys:
        ga, gb = by_key_a.get(key), by_key_b.get(key)
        any_g = ga or gb
        assert any_g is not None
        platforms = dict.fromkeys([*(ga.per_platform if ga else {}), *(gb.per_platform if gb else {})])
        for p in platforms:
            va = ga.values(p) if ga else []
            vb = gb.values(p) if gb else []
            row = ComparisonRow(*key[:3], any_g.unit, key[3], p, len(va), len(vb),
                                ga.per_platform[p].median if ga and p in ga.per_platform else None,
                                gb.per_platform[p].median if gb and p in gb.per_platform else None,
                                None, None, None, None, None, NOT_COMPARABLE)
            rows.append(row)
            samples.append((va, vb))
            if not va or not vb:
                row.why = f"no successful sample in {'A' if not va else 'B'}"
                continue
            ratio = ratio_ci(vb, va)
            if ratio is not None:
                row.change_pct = (ratio.point - 1) * 100
                if ratio.low is not None and ratio.high is not None:
                    row.ci_low_pct, row.ci_high_pct = (ratio.low - 1) * 100, (ratio.high - 1) * 100
                else:
                    row.why = "n too small for an interval"
    for row, p_value in zip(rows, mann_whitney_many(samples)):
        row.p = p_value
        if p_value is None and row.why is None:
            row.why = "fewer than 2 values on a side: no test"
    tested = [(row, pair) for row, pair in zip(rows, samples) if row.p is not None]
    for (row, (va, vb)), q in zip(tested, benjamini_hochberg([row.p for row, _ in tested if row.p is not None])):
        row.p_adjusted = q
        change = (row.median_b or 0) - (row.median_a or 0)
        if change == 0:  # equal medians, shifted distributions: the means say which way
            change = sum(vb) / len(vb) - sum(va) / len(va)
        row.verdict = verdict(row.unit, change, q < alpha)
    return rows


# --- provenance --------------------------------------------------------------------------
RUN_FACTS = ("kernel", "cpu_model", "cores", "memory_mb", "os", "hostname", "arch")
SAMPLE_KEYS = ("accel", "accel_reason", "image_digest", "recipe_digest", "nic", "placement", "platform_options",
               "workload_options", "benchmark_options", "testbed_rev", "suite_hash")


def _flat(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)


def provenance_facts(info: dict, rows: Iterable[SampleRow]) -> dict[str, str]:
    """What a reader compares between two runs: host facts, tool versions, accelerator, image
    digests, placement and options (per platform where they are per platform)."""
    facts: dict[str, str] = {"suite": info["suite"], "suite_hash": info["suite_hash"], "testbed_rev": info["testbed_rev"]}
    prov = info.get("provenance") or {}
    for side in ("server", "client"):
        host = prov.get(side)
        if isinstance(host, dict):
            for k in RUN_FACTS:
                if k in host:
                    facts[f"{side} {k}"] = _flat(host[k])
    per: dict[str, set[str]] = {}
    for r in rows:
        for k, v in (r.provenance.get("tools") or {}).items():
            per.setdefault(f"tool {k}", set()).add(_flat(v))
        for k in SAMPLE_KEYS:
            if k in r.provenance and k not in ("testbed_rev", "suite_hash"):
                label = f"{r.platform} {k}" if k not in ("benchmark_options",) else f"{r.benchmark} {k}"
                if k == "workload_options":
                    label = f"{r.workload} {k}"
                per.setdefault(label, set()).add(_flat(r.provenance[k]))
    for k, vals in per.items():
        facts[k] = " | ".join(sorted(vals))
    return facts


def provenance_diffs(a: dict[str, str], b: dict[str, str]) -> list[tuple[str, str, str]]:
    return [(k, a.get(k, "(absent)"), b.get(k, "(absent)")) for k in dict.fromkeys([*a, *b])
            if a.get(k) != b.get(k)]


# --- the command ---------------------------------------------------------------------------
def run_rows(store: Store, run_id: str) -> tuple[dict, list[SampleRow]]:
    info = store.run_info(run_id)
    if info is None:
        raise TestbedError(f"no run {run_id!r} in {store.path}; see `testbed results --list`")
    return info, list(store.samples(run_id))


def compare_runs(store: Store, run_a: str, run_b: str, *, force: bool = False, alpha: float = ALPHA) -> Comparison:
    info_a, rows_a = run_rows(store, run_a)
    info_b, rows_b = run_rows(store, run_b)
    if info_a["suite"] != info_b["suite"] and not force:
        raise ConfigError(f"run {run_a} is suite {info_a['suite']!r} and run {run_b} is suite {info_b['suite']!r}; "
                          f"compare runs of one suite, or pass --force")
    varying = varying_keys([*rows_a, *rows_b])  # one set of sweep keys, so the points line up
    ga, gb = summarize_rows(rows_a, varying=varying), summarize_rows(rows_b, varying=varying)
    cmp = Comparison(run_a, run_b, info_a["suite"], info_b["suite"],
                     provenance_diffs(provenance_facts(info_a, rows_a), provenance_facts(info_b, rows_b)),
                     compare_groups(ga, gb, alpha=alpha), alpha=alpha)
    if info_a["suite_hash"] != info_b["suite_hash"]:
        cmp.notes.append("the suite file changed between the runs (suite_hash differs): check the options above")
    for info in (info_a, info_b):
        if info["status"] != "ok":
            cmp.notes.append(f"run {info['run_id']} ended {info['status']}: {info['reason'] or 'no reason recorded'}")
    return cmp
