"""`testbed report`: one self-contained HTML file for one or more runs.

Jinja2 renders templates/report.html.j2 with autoescape on; figures are inline SVG from
plots.py; the CSS is inline; nothing is fetched (no script, stylesheet, font or image from
anywhere). Per run: the figures, the summary table, rankings, every flag with its reason, the
paper's published numbers and claim verdicts when the caller has them (the suite's claims are
checked elsewhere: this module only renders them), and the full provenance.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from .. import __version__
from ..errors import TestbedError
from .flags import RANKING_LEGEND
from .plots import Plot, figures
from .stats import CI_METHOD, MIN_N_INTERVAL, MIN_N_P95
from .store import SampleRow, Store
from .summary import is_headline, platform_labels, summarize_rows, summary_records
from .numbers import fmt
from .table import duration, run_host

TEMPLATES = Path(__file__).with_name("templates")
VOLATILE_PROVENANCE = ("interference",)  # differs per sample; summarised on its own


@dataclass
class ClaimVerdict:
    claim: str  # what the paper states, e.g. "gVisor cold start within 2x of runc"
    verdict: str  # reproduced | not reproduced | inconclusive | not comparable
    detail: str = ""  # the numbers and the test that decided (or the repetitions that would)
    source: str = ""  # paper, figure or table
    id: str = ""
    test: str = ""  # the test that decided
    repetitions: int | None = None  # per platform, to decide an inconclusive claim


@dataclass
class PublishedValue:
    what: str  # e.g. "redis SET req/s on gVisor"
    published: str  # the paper's figure, with its unit
    ours: str = ""
    source: str = ""
    published_ratio: str = ""  # to the paper's baseline system
    ours_ratio: str = ""  # to our platform standing for that baseline


@dataclass
class PaperData:
    """A paper suite's section: claims with verdicts, published numbers beside ours, figures, caveats."""

    claims: list[ClaimVerdict] = field(default_factory=list)
    published: list[PublishedValue] = field(default_factory=list)
    citation: str = ""
    url: str = ""
    hardware: str = ""  # the paper's, and ours
    caveats: list[str] = field(default_factory=list)  # e.g. the TCG caveat
    counts: dict[str, int] = field(default_factory=dict)
    figures: list[Plot] = field(default_factory=list)


def paper_data(suite: Any, rows: Sequence[SampleRow], groups: list, labels: dict[str, str], run_id: str,
               host: str = "") -> PaperData:
    """The paper section for a run: `suite` has .paper, .published, .claims (config/papers.py models)."""
    from .claims import TCG_REASON, evaluate_claims, published_rows, verdict_counts
    from .paper_plots import claim_figures, published_figure

    verdicts = evaluate_claims(suite, rows, groups)
    data = PaperData(counts=verdict_counts(verdicts))
    paper, published = suite.paper, suite.published
    if paper is not None:
        data.citation, data.url = paper.citation(), paper.url
    if published is not None:
        data.hardware = f"paper: {published.hardware}" + (f", {published.nic}" if published.nic else "") + \
            (f"; here: {host}" if host else "")
    for v, claim in zip(verdicts, suite.claims):
        data.claims.append(ClaimVerdict(v.statement, v.verdict, v.detail, v.source, v.id, v.test, v.repetitions))
        data.figures += claim_figures(v, claim, groups, labels, run_id)
    tcg = sorted({r.platform for r in rows if r.provenance.get("accel") == "tcg"})
    if tcg:
        data.caveats.append(f"{TCG_REASON}: {', '.join(tcg)} ran under TCG here, so every claim involving "
                            f"{'it' if len(tcg) == 1 else 'them'} is not comparable with the paper's numbers.")
    if published is not None:
        prows = published_rows(published, groups)
        base_ours = next((r.ours_platform for r in prows if r.system == published.baseline), None)
        for r in prows:
            ours = f"{fmt(r.ours)} {r.ours_unit} on {r.ours_platform} (n={r.ours_n})" if r.ours is not None else r.note
            data.published.append(PublishedValue(
                f"{r.system}: {r.what}" if r.what else r.system, f"{'~' if r.approx else ''}{fmt(r.published)} {r.unit}",
                ours, published.source, f"{fmt(r.published_ratio)}x" if r.published_ratio is not None else "",
                f"{fmt(r.ours_ratio)}x" if r.ours_ratio is not None else ""))
        fig = published_figure(prows, published.baseline or "", base_ours, run_id) if published.baseline else None
        if fig is not None:
            data.figures.insert(0, fig)
        if published.note:
            data.caveats.append(published.note)
    return data


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = fmt
    return env


def distinct_provenance(rows: Sequence[SampleRow]) -> list[dict[str, Any]]:
    """Each distinct sample provenance (volatile keys removed), with the platforms/benchmarks it covers."""
    seen: dict[str, dict[str, Any]] = {}
    for r in rows:
        prov = {k: v for k, v in r.provenance.items() if k not in VOLATILE_PROVENANCE}
        key = json.dumps(prov, sort_keys=True, default=str)
        entry = seen.setdefault(key, {"covers": {}, "samples": 0, "json": json.dumps(prov, indent=1, sort_keys=True,
                                                                                       default=str)})
        entry["covers"].setdefault(f"{r.platform} / {r.workload} / {r.benchmark}", None)
        entry["samples"] += 1
    return [{"covers": list(e["covers"]), "samples": e["samples"], "json": e["json"]} for e in seen.values()]


def interference_summary(rows: Sequence[SampleRow]) -> dict[str, Any] | None:
    """Host load across the run's samples, when the runner recorded it."""
    loads = [r.provenance["interference"] for r in rows if isinstance(r.provenance.get("interference"), dict)]
    if not loads:
        return None
    load1 = [x["loadavg"][0] for x in loads if x.get("loadavg")]
    steal = [x["steal_pct"] for x in loads if x.get("steal_pct") is not None]
    overlap = sorted({str(o.get("run_id", o)) if isinstance(o, dict) else str(o)
                      for x in loads for o in (x.get("overlap") or [])})
    return {"samples": len(loads), "max_load1": max(load1) if load1 else None,
            "max_steal_pct": max(steal) if steal else None, "overlap": overlap}


def run_section(store: Store, run_id: str, paper: Any = None) -> dict[str, Any]:
    """One run's section; `paper` is its PaperData, or the paper blocks to judge its claims with."""
    info = store.run_info(run_id)
    if info is None:
        raise TestbedError(f"no run {run_id!r} in {store.path}; see `testbed results --list`")
    rows = list(store.samples(run_id))
    groups = summarize_rows(rows)
    labels = platform_labels(rows)
    if paper is not None and not isinstance(paper, PaperData):
        server = (info["provenance"] or {}).get("server") or {}
        here = ", ".join(str(x) for x in (run_host(info), server.get("cpu_model"),
                                          f"{server['cores']} cores" if server.get("cores") else None) if x)
        paper = paper_data(paper, rows, groups, labels, run_id, here)
    figs, left_out = figures(groups, labels)
    flags = [{"label": g.label, "platform": labels.get(p, p), "name": f.name, "detail": f.detail}
             for g in groups for p, s in g.per_platform.items() for f in s.flags]
    return {
        "id": run_id, "info": info, "host": run_host(info),
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started"])),
        "duration": duration(info["started"], info["finished"]), "samples": len(rows),
        "figures": figs, "figures_left_out": left_out,
        "records": summary_records(groups, labels),
        "rankings": [n for g in groups for n in g.notes],
        "flags": flags,
        "paper": paper,
        "run_provenance": json.dumps(info["provenance"], indent=1, sort_keys=True, default=str),
        "sample_provenance": distinct_provenance(rows),
        "interference": interference_summary(rows),
    }


HISTORY_FIGURES = 12  # per suite: the headline metrics' series, the rest stay in `testbed history`


def history_section(store: Store, suite: str) -> dict[str, Any] | None:
    """The suite's nights in this store (two or more): a time series per headline metric with its
    intervals, change points and configuration changes (results/nightly.series_history)."""
    from .nightly import series_history
    from .plots import history_figure

    try:
        series = series_history(store, suite)
    except TestbedError:
        return None
    if not series or max(len(h.nights) for h in series) < 2:
        return None
    by_metric: dict[tuple, list] = {}
    for h in series:
        if is_headline(h.key.metric):
            k = (h.key.host, h.key.workload, h.key.benchmark, h.key.metric, h.key.point)
            by_metric.setdefault(k, []).append(h)
    figs = [history_figure(hs, " ".join(x for x in k[1:] if x), hs[0].unit, k) for k, hs in
            list(by_metric.items())[:HISTORY_FIGURES]]
    notes = [f"{h.key.label}: {m.text}" for h in series for m in h.config_changes + h.change_points]
    return {"nights": max(len(h.nights) for h in series), "figures": figs, "left_out": max(0, len(by_metric) -
            HISTORY_FIGURES), "notes": notes}


def render_report(store: Store, run_ids: Sequence[str], *, papers: Mapping[str, Any] | None = None) -> str:
    """The report's HTML. `papers` maps a run id (or a suite name) to its PaperData, or to the paper
    blocks (.paper, .published, .claims) its claims are judged with."""
    papers = papers or {}
    sections = []
    for r in run_ids:
        info = store.run_info(r)
        suite = info["suite"] if info else ""
        sections.append(run_section(store, r, papers.get(r, papers.get(suite))))
    suites: dict[str, list[dict[str, Any]]] = {}
    for s in sections:
        suites.setdefault(s["info"]["suite"], []).append(s)
    histories = {suite: history_section(store, suite) for suite in suites}
    return environment().get_template("report.html.j2").render(
        suites=suites, histories=histories, generated=time.strftime("%Y-%m-%d %H:%M:%S"), version=__version__,
        ci_method=CI_METHOD,
        min_n_interval=MIN_N_INTERVAL, min_n_p95=MIN_N_P95, ranking_legend=RANKING_LEGEND, store=str(store.path))


def write_report(store: Store, run_ids: Sequence[str], output: Path, *,
                 papers: Mapping[str, Any] | None = None) -> Path:
    text = render_report(store, run_ids, papers=papers)
    output = Path(output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(f".{output.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(output)
    except OSError as exc:
        raise TestbedError(f"{output}: cannot write the report: {exc.strerror or exc}") from None
    return output
