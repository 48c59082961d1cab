"""Figures for the HTML report, drawn with matplotlib's Agg-free SVG canvas and returned as inline SVG.

The shapes such papers use: bars with the 95% CI of the median for a platform comparison at one
point (no bar whisker where n is too small: the bar says so), lines with CI bands along a
numeric sweep (connections, sizes), and latency-percentile curves where the tool reports a
distribution (wrk 50/75/90/99, redis-benchmark 50/95/99, netperf 50/90/99). Text stays text
(`svg.fonttype: none`), ids are salted deterministically, and the XML prolog, DOCTYPE and RDF
metadata are dropped: the SVG references nothing outside itself.
"""

from __future__ import annotations

import io
import re
import time
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; set before anything imports pyplot

from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

from .flags import numeric, sweep_lines
from .summary import Group, groups_by_metric, is_headline

RC: Any = {"svg.fonttype": "none", "svg.hashsalt": "testbed", "font.size": 9, "axes.spines.top": False,
           "axes.spines.right": False, "font.family": "sans-serif"}  # Any: matplotlib types rc keys as literals
COLOURS = ["#1b6ca8", "#d1495b", "#edae49", "#00798c", "#6a4c93", "#30638e", "#8d6a9f", "#5c946e"]
PERCENTILE_RE = re.compile(r"^latency_p(\d+)_(ms|us)$")
SWEEP_MIN_POINTS = 3
LOG_RANGE = 30.0  # bar charts switch to a log axis when the medians span more than this


@dataclass
class Plot:
    """One figure: its id (for anchors and tests), title, caption and the inline SVG."""

    id: str
    title: str
    caption: str
    svg: str


def namespaced(svg: str, prefix: str) -> str:
    """Prefix the SVG's element ids (and references to them): many figures share one HTML document."""
    ids = set(re.findall(r'\bid="([^"]+)"', svg))
    if not ids:
        return svg
    pattern = re.compile(r'(\bid="|#)(' + "|".join(re.escape(i) for i in sorted(ids, key=len, reverse=True)) + r')\b')
    return pattern.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", svg)


def to_svg(fig: Figure, prefix: str) -> str:
    buf = io.StringIO()
    FigureCanvasSVG(fig)
    with matplotlib.rc_context(RC):
        fig.savefig(buf, format="svg", bbox_inches="tight",
                    metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]  # drop the XML prolog and the DOCTYPE (it names an external DTD)
    return namespaced(re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S), prefix)


def _figure(width: float = 6.0, height: float = 3.2) -> Figure:
    with matplotlib.rc_context(RC):
        return Figure(figsize=(width, height))


def colour_map(platforms: list[str]) -> dict[str, str]:
    return {p: COLOURS[i % len(COLOURS)] for i, p in enumerate(platforms)}


def legend_above(ax, n: int) -> None:
    ax.legend(fontsize=7, frameon=False, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=min(4, max(n, 1)))


def _slug(*parts: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "-", "-".join(parts)).strip("-").lower()


def bar_figure(groups: list[Group], platforms: list[str], labels: dict[str, str]) -> Plot:
    """Grouped bars: categories = points (one if no sweep), a bar per platform, whisker = 95% CI of the median."""
    g0 = groups[0]
    colours = colour_map(platforms)
    with matplotlib.rc_context(RC):
        fig = _figure(max(4.0, 1.2 + 0.9 * len(groups) * max(1, len(platforms)) * 0.45), 3.2)
        ax = fig.add_subplot()
        width = 0.8 / max(1, len(platforms))
        no_ci = False
        for j, p in enumerate(platforms):
            xs, ys, err = [], [], []
            for i, g in enumerate(groups):
                s = g.per_platform.get(p)
                if s is None or s.median is None:
                    continue
                x = i + (j - (len(platforms) - 1) / 2) * width
                xs.append(x)
                ys.append(s.median)
                if s.has_interval:
                    err.append((x, s.median, s.median - (s.ci_low or 0), (s.ci_high or 0) - s.median))
                else:
                    no_ci = True
                    ax.annotate(f"n={s.n}", (x, s.median), ha="center", va="bottom", fontsize=7)
            if xs:
                ax.bar(xs, ys, width * 0.95, color=colours[p], label=labels.get(p, p))
            if err:  # whiskers only where there is an interval
                ax.errorbar([e[0] for e in err], [e[1] for e in err], yerr=[[e[2] for e in err], [e[3] for e in err]],
                            fmt="none", ecolor="black", elinewidth=1, capsize=3)
        ax.set_xticks(range(len(groups)), [g.point_label or g.metric for g in groups], rotation=0 if len(groups) < 5
                      else 30, ha="center" if len(groups) < 5 else "right")
        ax.set_ylabel(f"{g0.metric} ({g0.unit})")
        legend_above(ax, len(platforms))
        medians = [s.median for g in groups for s in g.per_platform.values() if s.median and s.median > 0]
        log = bool(medians) and max(medians) / min(medians) > LOG_RANGE
        if log:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
    caption = ("Median per platform; whiskers: 95% percentile-bootstrap CI of the median."
               + (" Bars marked n=… have too few repetitions for an interval." if no_ci else "")
               + (f" Logarithmic axis: the medians span more than {LOG_RANGE:g}x." if log else ""))
    fid = _slug("fig", g0.workload, g0.benchmark, g0.metric)
    return Plot(fid, f"{g0.workload} {g0.benchmark} {g0.metric}", caption, to_svg(fig, fid))


def sweep_figure(line: list[Group], key: str, platforms: list[str], labels: dict[str, str]) -> Plot:
    """A line per platform along a numeric sweep key, with the CI band where there is one."""
    g0 = line[0]
    colours = colour_map(platforms)
    rest = " ".join(f"{k}={v}" for k, v in sorted(g0.point.items()) if k != key)
    with matplotlib.rc_context(RC):
        fig = _figure()
        ax = fig.add_subplot()
        xs_all = [numeric(g.point[key]) or 0.0 for g in line]
        for p in platforms:
            pts = [(x, g.per_platform[p]) for x, g in zip(xs_all, line) if p in g.per_platform
                   and g.per_platform[p].median is not None]
            if not pts:
                continue
            xs = [x for x, _ in pts]
            ax.plot(xs, [s.median or 0.0 for _, s in pts], marker="o", color=colours[p], label=labels.get(p, p))
            band = [(x, s.ci_low or 0.0, s.ci_high or 0.0) for x, s in pts if s.has_interval]
            if len(band) >= 2:
                ax.fill_between([b[0] for b in band], [b[1] for b in band], [b[2] for b in band], color=colours[p],
                                alpha=0.2, linewidth=0)
        if max(xs_all) / max(min(xs_all), 1e-12) >= 16:
            ax.set_xscale("log", base=2)
        ax.set_xticks(xs_all, [str(g.point[key]) for g in line])
        ax.minorticks_off()
        ax.set_xlabel(key)
        ax.set_ylabel(f"{g0.metric} ({g0.unit})")
        legend_above(ax, len(platforms))
    fid = _slug("fig", g0.workload, g0.benchmark, g0.metric, key, rest)
    return Plot(fid, f"{g0.workload} {g0.benchmark} {g0.metric} along {key}" + (f" ({rest})" if rest else ""),
                "Median per platform; band: 95% percentile-bootstrap CI of the median (where n allows one).",
                to_svg(fig, fid))


def percentile_figure(groups: list[Group], platforms: list[str], labels: dict[str, str]) -> Plot | None:
    """Latency against percentile (the tool's own distribution, median across repetitions)."""
    by_pct = {int(m.group(1)): g for g in groups if (m := PERCENTILE_RE.match(g.metric))}
    if len(by_pct) < 3:
        return None
    pcts = sorted(by_pct)
    g0 = by_pct[pcts[0]]
    unit = g0.unit
    colours = colour_map(platforms)
    with matplotlib.rc_context(RC):
        fig = _figure(5.0, 3.0)
        ax = fig.add_subplot()
        for p in platforms:
            pts = [(q, by_pct[q].per_platform[p]) for q in pcts if p in by_pct[q].per_platform
                   and by_pct[q].per_platform[p].median is not None]
            if len(pts) < 2:
                continue
            ax.plot(range(len(pts)), [s.median or 0.0 for _, s in pts], marker="o", color=colours[p], label=labels.get(p, p))
        ax.set_xticks(range(len(pcts)), [f"p{q}" for q in pcts])
        ax.set_yscale("log")
        ax.set_xlabel("percentile of the tool's latency distribution")
        ax.set_ylabel(f"latency ({unit})")
        legend_above(ax, len(platforms))
    point = " ".join(f"{k}={v}" for k, v in sorted(g0.point.items()))
    fid = _slug("pct", g0.workload, g0.benchmark, point)
    return Plot(fid, f"{g0.workload} {g0.benchmark} latency percentiles" + (f" ({point})" if point else ""),
                "Each point: the median across repetitions of the percentile the tool reported.", to_svg(fig, fid))


def numeric_sweep_key(groups: list[Group]) -> str | None:
    keys = {k for g in groups for k in g.point}
    best = None
    for k in sorted(keys):
        values = {str(g.point.get(k)) for g in groups if k in g.point}
        if len(values) >= SWEEP_MIN_POINTS and all(numeric(g.point.get(k)) is not None for g in groups):
            best = k if best is None or k in ("connections", "clients", "concurrency") else best
    return best


def figures(groups: list[Group], labels: dict[str, str], *, limit: int = 60) -> tuple[list[Plot], int]:
    """The figures of one run (headline metrics and latency distributions) and how many were left out
    over `limit` (every number stays in the report's tables)."""
    platforms = list(labels)
    out: list[Plot] = []
    wanted = 0
    for (_w, _b, metric), mgroups in groups_by_metric(groups).items():
        if not is_headline(metric) or all(s.median is None for g in mgroups for s in g.per_platform.values()):
            continue
        key = numeric_sweep_key(mgroups)
        if key is not None:
            for line in sweep_lines(mgroups, key):
                wanted += 1
                if len(out) < limit:
                    out.append(sweep_figure(line, key, platforms, labels))
        else:
            wanted += 1
            if len(out) < limit:
                out.append(bar_figure(mgroups, platforms, labels))
    by_point: dict[tuple, list[Group]] = {}
    for g in groups:
        if PERCENTILE_RE.match(g.metric):
            by_point.setdefault((g.workload, g.benchmark, g.point_label), []).append(g)
    for pgroups in by_point.values():
        fig = percentile_figure(pgroups, platforms, labels)
        if fig is not None:
            wanted += 1
            if len(out) < limit:
                out.append(fig)
    seen: dict[str, int] = {}
    for f in out:  # ids must be unique anchors
        n = seen.get(f.id, 0)
        seen[f.id] = n + 1
        if n:
            new = f"{f.id}-{n}"
            f.svg = f.svg.replace(f'id="{f.id}-', f'id="{new}-').replace(f"#{f.id}-", f"#{new}-")
            f.id = new
    return out, wanted - len(out)


def history_figure(series: list, key_label: str, unit: str, fid_parts: tuple[str, ...]) -> Plot:
    """One metric's nights (one line per platform): nightly medians with their CI of the median as
    error bars, configuration changes as dashed verticals, confirmed change points as dotted ones."""
    platforms = [h.key.platform for h in series]
    colours = colour_map(platforms)
    with matplotlib.rc_context(RC):
        fig = _figure(6.4, 3.2)
        ax = fig.add_subplot()
        marks: set[tuple[float, str]] = set()
        for h in series:
            xs = [n.started for n in h.nights]
            ys = [n.median for n in h.nights]
            lo = [n.median - n.ci[0] if n.ci else 0.0 for n in h.nights]
            hi = [n.ci[1] - n.median if n.ci else 0.0 for n in h.nights]
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o-", ms=3, lw=1, capsize=2, color=colours[h.key.platform],
                        label=h.key.platform)
            for m in h.config_changes:
                marks.add((h.nights[m.night].started, "config"))
            for m in h.change_points:
                marks.add((h.nights[m.night].started, "change"))
        for x, kind in sorted(marks):
            ax.axvline(x, color="grey" if kind == "config" else "red", lw=0.8,
                       ls="--" if kind == "config" else ":")
        ticks = sorted({n.started for h in series for n in h.nights})
        step = max(1, len(ticks) // 8)
        ax.set_xticks(ticks[::step], [time.strftime("%m-%d %H:%M", time.localtime(t)) for t in ticks[::step]],
                      rotation=30, ha="right")
        ax.set_ylabel(f"{key_label} ({unit})")
        legend_above(ax, len(platforms))
    caption = ("One point per night: the run's median, error bars its distribution-free CI of the median. "
               "Dashed grey: a configuration change (a new baseline starts); dotted red: a confirmed change point.")
    fid = _slug("hist", *fid_parts)
    return Plot(fid, f"history: {key_label}", caption, to_svg(fig, fid))
