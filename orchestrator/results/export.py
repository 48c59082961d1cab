"""Exports of a run: every sample with its provenance, or the summary table, as JSON or CSV."""

from __future__ import annotations

import csv
import io
import json

from .store import Store
from .summary import platform_labels, summarize_rows, summary_records

SAMPLE_FIELDS = ["id", "run_id", "measured", "platform", "workload", "benchmark", "metric", "value", "unit",
                 "repetition", "status", "reason", "params", "provenance"]
SUMMARY_FIELDS = ["workload", "benchmark", "metric", "unit", "point", "platform", "platform_label", "n", "failed",
                  "median", "ci_low", "ci_high", "ci_reason", "ci_method", "mean", "sd", "cv", "min", "max", "p95",
                  "p99", "tail_name", "tail", "flag_names", "flags", "failures"]


def _csv(fields: list[str], records: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    for r in records:
        w.writerow({k: json.dumps(v, sort_keys=True, default=str) if isinstance(v, (dict, list)) else v
                    for k, v in r.items()})
    return buf.getvalue()


def records_csv(records: list[dict]) -> str:
    """Flat records (run list, comparison rows) as CSV with the first record's keys as columns."""
    return _csv(list(records[0]), records) if records else ""


def export_samples(store: Store, run_id: str, fmt_name: str) -> str:
    """Every sample with its provenance: JSON {run, samples} or flat CSV (params/provenance as JSON)."""
    rows = [r.as_dict() for r in store.samples(run_id)]
    if fmt_name == "json":
        return json.dumps({"run": store.run_info(run_id), "samples": rows}, indent=1, default=str)
    return _csv(SAMPLE_FIELDS, rows)


def export_summary(store: Store, run_id: str, fmt_name: str) -> str:
    """The summary table (per group and platform: n, median, CI or why none, tail, CV, flags with
    details); JSON adds each group's ranking and notes."""
    rows = list(store.samples(run_id))
    groups = summarize_rows(rows)
    records = summary_records(groups, platform_labels(rows))
    if fmt_name == "json":
        rankings = [{"workload": g.workload, "benchmark": g.benchmark, "metric": g.metric, "point": g.point_label,
                     "ranking": g.ranking.as_dict() if g.ranking else None, "notes": g.notes} for g in groups]
        return json.dumps({"run": store.run_info(run_id), "summary": records, "groups": rankings}, indent=1,
                          default=str)
    return _csv(SUMMARY_FIELDS, records)
