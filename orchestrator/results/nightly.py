"""The verdict of a night: regressions, improvements, configuration changes, series without enough history.

For every series of a suite (host, workload, benchmark, metric, sweep point, platform), the nights
of its current configuration (changepoint.py finds and tests the latest change; a fingerprint
change starts a new baseline and is reported as what it is), Benjamini-Hochberg across the series
of the night, a magnitude threshold, and the direction of the unit. A regression fails the night
(exit 1); improvements, configuration changes and "not enough history" are reported without
failing. write_junit() renders the same verdicts for a CI server.
"""

from __future__ import annotations

import math
import socket
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ..errors import DataError
from .changepoint import Change, DetectorConfig, change_points, classify, decisive_p, describe_test, latest_change
from .fingerprint import diff, diff_maps
from .history import Night, Series, SeriesKey, extract_series
from .numbers import fmt
from .stats import benjamini_hochberg, direction
from .store import Store

REGRESSION, IMPROVEMENT, CHANGE, OK = "regression", "improvement", "change", "ok"
CONFIGURATION_CHANGE, NOT_ENOUGH, NOT_MEASURED, NOT_ANALYSED = (
    "configuration change", "not enough history", "not measured", "not analysed")
STATUS_ORDER = (REGRESSION, IMPROVEMENT, CHANGE, CONFIGURATION_CHANGE, NOT_ENOUGH, OK, NOT_MEASURED, NOT_ANALYSED)


@dataclass(frozen=True)
class NightlyConfig:
    """What the night's verdict is measured against (defaults from benchmarks/detection_power.py)."""

    detector: DetectorConfig = field(default_factory=DetectorConfig)
    threshold: float = 0.05                       # smallest relative change worth a verdict
    metric_thresholds: Mapping[str, float] = field(default_factory=dict)  # per metric name
    min_nights: int = 5                           # nights of the current configuration before any verdict
    window: int = 30                              # most recent nights of the configuration looked at

    def threshold_for(self, metric: str) -> float:
        return self.metric_thresholds.get(metric, self.threshold)


@dataclass
class Verdict:
    key: SeriesKey
    unit: str
    status: str
    nights: int                                   # nights of the current configuration (within the window)
    change: Change | None = None
    p_adjusted: float | None = None               # the change's decisive p after Benjamini-Hochberg
    test: str = ""                                # which test(s) decided
    first: Night | None = None                    # first night of the change
    last_before: Night | None = None              # the night before it
    levels: tuple[float, float] | None = None     # geometric mean of the nightly medians before / after
    config_diff: list[str] = field(default_factory=list)
    context_diff: list[str] = field(default_factory=list)  # other provenance that differed at the first night
    note: str = ""

    @property
    def failed(self) -> bool:
        return self.status == REGRESSION


def when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def night_label(n: Night) -> str:
    return f"{when(n.started)} (run {n.run_id})"


def pct(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x * 100:+.1f}%"


@dataclass
class NightlyReport:
    suite: str
    store: Path
    run_id: str                                   # tonight's run
    started: float
    verdicts: list[Verdict]
    config: NightlyConfig

    def of(self, status: str) -> list[Verdict]:
        return [v for v in self.verdicts if v.status == status]

    @property
    def regressions(self) -> list[Verdict]:
        return self.of(REGRESSION)

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions else 0

    def lines(self) -> list[str]:
        """One line per finding, regressions first; status lines; a closing summary."""
        out = [line(v) for status in (REGRESSION, IMPROVEMENT, CHANGE, CONFIGURATION_CHANGE)
               for v in self.of(status)]
        short: dict[tuple[int, str], int] = {}
        for v in self.of(NOT_ENOUGH):
            short[(v.nights, v.note)] = short.get((v.nights, v.note), 0) + 1
        for (nights, note), count in sorted(short.items()):
            out.append(f"not enough history ({nights} of {self.config.min_nights} nights): {count} series"
                       + (f" ({note})" if note else ""))
        for status in (NOT_MEASURED, NOT_ANALYSED):
            vs = self.of(status)
            if vs:
                out.append(f"{status}: {len(vs)} series ({vs[0].note}), e.g. {vs[0].key.label}")
        plural = {REGRESSION: "regressions", IMPROVEMENT: "improvements", CHANGE: "changes",
                  CONFIGURATION_CHANGE: "configuration changes"}
        counts = ", ".join(f"{len(self.of(st))} {plural.get(st, st)}" for st in STATUS_ORDER
                           if self.of(st) or st == REGRESSION)
        d = self.config.detector
        out.append(f"nightly {self.suite}: run {self.run_id} ({when(self.started)}), {len(self.verdicts)} series: {counts}; "
                   f"{d.method} change points, FDR {d.alpha:g} (Benjamini-Hochberg), threshold {self.config.threshold:.0%}")
        return out


def line(v: Verdict) -> str:
    """The one line of a finding."""
    if v.status == CONFIGURATION_CHANGE:
        return (f"configuration change: {v.key.label}: {'; '.join(v.config_diff)}; a new baseline starts at "
                f"{night_label(v.first)}" if v.first else f"configuration change: {v.key.label}")
    c = v.change
    assert c is not None and v.first is not None and v.levels is not None
    before, after = v.levels
    context = "; ".join(v.context_diff) if v.context_diff else "none"
    return (f"{v.status}: {v.key.label}: {pct(c.rel_change)} (95% CI {pct(c.ci[0])} to {pct(c.ci[1])}; "
            f"{fmt(before)} -> {fmt(after)} {v.unit}) since {night_label(v.first)}, {c.after.nights} night"
            f"{'s' if c.after.nights > 1 else ''}; provenance difference at that night: {context}; "
            f"{v.test}; BH-adjusted p={v.p_adjusted:.2g}")


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in values) / len(values))


def _judge(s: Series, run_id: str, config: NightlyConfig) -> tuple[Verdict, Change | None, list[Night]]:
    """A series' status before adjustment across series, its latest-change candidate and its nights."""
    upto = next((i for i, n in enumerate(s.nights) if n.run_id == run_id), None)
    if upto is None:
        reason = "every sample failed in tonight's run" if run_id in s.unmeasured else "not in tonight's run"
        return Verdict(s.key, s.unit, NOT_MEASURED, 0, note=reason), None, []
    nights_all = s.nights[:upto + 1]
    segs = Series(s.key, s.unit, nights_all).configuration_segments()
    current = segs[-1][-config.window:]
    if len(segs) >= 2 and len(segs[-1]) == 1:
        previous = segs[-2][-1]
        return Verdict(s.key, s.unit, CONFIGURATION_CHANGE, 1, first=current[0], last_before=previous,
                       config_diff=diff(previous.fingerprint, current[0].fingerprint)), None, current
    if len(current) < config.min_nights:
        note = (f"configuration changed at {night_label(segs[-1][0])}" if len(segs) >= 2 else "")
        return Verdict(s.key, s.unit, NOT_ENOUGH, len(current), note=note), None, current
    if any(n.median <= 0 for n in current):
        return Verdict(s.key, s.unit, NOT_ANALYSED, len(current),
                       note="a median <= 0 has no relative change"), None, current
    change = latest_change([n.median for n in current], [n.samples for n in current], config.detector)
    return Verdict(s.key, s.unit, OK, len(current)), change, current


def analyze_nightly(store: Store, suite_name: str, host: str | None = None, config: NightlyConfig = NightlyConfig(),
                    run_id: str | None = None) -> NightlyReport:
    """The verdict of the night `run_id` (default: the suite's latest finished run) for every series.

    Raises DataError (exit 2) for a suite without history, an unknown host or run, or a corrupted store.
    """
    series, runs = extract_series(store, suite_name, host)
    tonight = runs[-1]
    if run_id is not None:
        found = [r for r in runs if r["run_id"] == run_id]
        if not found:
            raise DataError(f"run {run_id!r}: not a finished run of suite {suite_name!r} in {store.path}")
        tonight = found[0]
    judged = [_judge(s, tonight["run_id"], config) for s in series]
    tested = [(v, c, nights) for v, c, nights in judged if v.status == OK]
    ps = [decisive_p(c, config.detector.confirm) if c else 1.0 for _, c, _ in tested]
    adjusted = benjamini_hochberg(ps)
    for (v, c, nights), p_adj in zip(tested, adjusted):
        if c is None:
            continue
        status = classify(c, float(p_adj), config.detector.alpha, config.threshold_for(v.key.metric),
                          direction(v.unit))
        if status == OK:
            continue
        first, before = nights[c.first_night], nights[c.first_night - 1]
        v.status, v.change, v.p_adjusted = status, c, float(p_adj)
        v.test = describe_test(c, config.detector.confirm)
        v.first, v.last_before = first, before
        v.levels = (_geomean([n.median for n in nights[c.before.start:c.before.stop]]),
                    _geomean([n.median for n in nights[c.after.start:c.after.stop]]))
        v.context_diff = diff_maps(before.context, first.context)
    order = {s: i for i, s in enumerate(STATUS_ORDER)}
    verdicts = sorted((v for v, _, _ in judged), key=lambda v: (order[v.status], v.key.label))
    return NightlyReport(suite_name, store.path, tonight["run_id"], tonight["started"], verdicts, config)


def write_junit(report: NightlyReport, path: Path) -> None:
    """The night's verdicts as JUnit XML: one testcase per series; a regression is a failure, a series
    without enough history (or not measured tonight) is skipped, everything else passes with its line."""
    cases = report.verdicts
    suite = ET.Element("testsuite", {
        "name": f"testbed nightly {report.suite}",
        "tests": str(len(cases)),
        "failures": str(sum(v.failed for v in cases)),
        "errors": "0",
        "skipped": str(sum(v.status in (NOT_ENOUGH, NOT_MEASURED, NOT_ANALYSED) for v in cases)),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(report.started)),
        "hostname": socket.gethostname(),
    })
    props = ET.SubElement(suite, "properties")
    for name, value in (("run_id", report.run_id), ("store", str(report.store))):
        ET.SubElement(props, "property", {"name": name, "value": value})
    for v in cases:
        k = v.key
        tc = ET.SubElement(suite, "testcase", {
            "classname": ".".join(x.replace(".", "_") for x in (report.suite, k.host, k.platform)),
            "name": " ".join(x for x in (k.workload, k.benchmark, k.metric, k.point) if x),
            "time": "0",
        })
        if v.failed:
            el = ET.SubElement(tc, "failure", {"type": "regression", "message": line(v)})
            el.text = line(v)
        elif v.status in (NOT_ENOUGH, NOT_MEASURED, NOT_ANALYSED):
            msg = (f"not enough history ({v.nights} of {report.config.min_nights} nights)" if v.status == NOT_ENOUGH
                   else f"{v.status}: {v.note}")
            ET.SubElement(tc, "skipped", {"message": msg})
        elif v.status != OK:
            ET.SubElement(tc, "system-out").text = line(v)
    root = ET.Element("testsuites", {"name": "testbed nightly"})
    root.append(suite)
    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


# --- history for displays ---------------------------------------------------------------------

@dataclass
class HistoryMark:
    night: int          # index into SeriesHistory.nights
    text: str


@dataclass
class SeriesHistory:
    """One series' nights with its configuration changes and confirmed change points, for a plot or table."""

    key: SeriesKey
    unit: str
    nights: list[Night]
    config_changes: list[HistoryMark]
    change_points: list[HistoryMark]
    changes: list[tuple[int, Change]]  # (night index of the first night after, the change) per confirmed point


def series_history(store: Store, suite_name: str, host: str | None = None, metric: str | None = None,
                   config: NightlyConfig = NightlyConfig()) -> list[SeriesHistory]:
    """Every series of a suite (optionally one metric) with intervals, change points and configuration changes.

    Change points are searched within each configuration, confirmed with the nightly detector's
    tests (p with a Bonferroni factor for the split points searched, unadjusted across series) and
    the magnitude threshold.
    """
    series, _ = extract_series(store, suite_name, host)
    if metric is not None:
        known = sorted({s.key.metric for s in series})
        series = [s for s in series if s.key.metric == metric]
        if not series:
            raise DataError(f"--metric {metric}: suite {suite_name!r} has no such metric; metrics: {', '.join(known)}")
    out = []
    for s in series:
        h = SeriesHistory(s.key, s.unit, s.nights, [], [], [])
        offset = 0
        segs = s.configuration_segments()
        if not segs:  # every sample of the series failed or could not run: no night to draw
            continue
        for i, seg in enumerate(segs):
            if i:
                h.config_changes.append(HistoryMark(offset, "configuration: " + "; ".join(
                    diff(segs[i - 1][-1].fingerprint, seg[0].fingerprint))))
            for c in change_points([n.median for n in seg], [n.samples for n in seg], config.detector):
                p = decisive_p(c, config.detector.confirm)
                if classify(c, p, config.detector.alpha, config.threshold_for(s.key.metric), direction(s.unit)) == OK:
                    continue
                h.changes.append((offset + c.first_night, c))
                h.change_points.append(HistoryMark(offset + c.first_night, (
                    f"change {pct(c.rel_change)} (95% CI {pct(c.ci[0])} to {pct(c.ci[1])}), p={p:.2g}")))
            offset += len(seg)
        latest = _latest_mark(segs[-1], s.key.metric, s.unit, config)
        if latest is not None and all(m.night != offset - len(segs[-1]) + latest.night for m in h.change_points):
            h.change_points.append(HistoryMark(offset - len(segs[-1]) + latest.night, latest.text))
        out.append(h)
    return out


def _latest_mark(nights: list[Night], metric: str, unit: str, config: NightlyConfig) -> HistoryMark | None:
    """The latest night's change as the nightly verdict sees it, when it is too recent to be a change
    point of the history yet (tonight or yesterday)."""
    current = nights[-config.window:]
    if len(current) < config.min_nights or any(n.median <= 0 for n in current):
        return None
    c = latest_change([n.median for n in current], [n.samples for n in current], config.detector)
    if c is None:
        return None
    p = decisive_p(c, config.detector.confirm)
    status = classify(c, p, config.detector.alpha, config.threshold_for(metric), direction(unit))
    if status == OK:
        return None
    return HistoryMark(len(nights) - len(current) + c.first_night,
                       f"{status} {pct(c.rel_change)} (95% CI {pct(c.ci[0])} to {pct(c.ci[1])}), p={p:.2g}, "
                       f"{c.after.nights} night{'s' if c.after.nights > 1 else ''} so far")
