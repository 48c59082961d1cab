"""Flags: what a reader must not over-read, attached to a platform's value in a group.

too short     a run below MIN_RUN_S or MIN_REQUESTS (the tool's clock quantizes its rate), or zero
              spread across repetitions from a discrete output (a log2 bucket bound, a clock tick)
inconsistent  a closed-loop tool whose throughput x mean latency (Little's law: requests in flight)
              exceeds its connections by more than LITTLE_TOLERANCE; both numbers are named
cliff         a sweep point more than CLIFF_RATIO x worse than its neighbour on the same platform,
              beyond what the sweep's own scale explains (r x the connections or size: r x worse)
too good      throughput more than TOO_GOOD_RATIO x native's on the same host and run
overlap       samples measured while another testbed run was live on the same CPUs
              (provenance `interference.overlap` non-empty)

Each check reads only samples, so it is tested on synthetic data.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

from .numbers import fmt, fmt_p
from .stats import Flag, Ranking, direction
import itertools

if TYPE_CHECKING:
    from .store import SampleRow
    from .summary import Group

__all__ = ["Flag", "RunIndex", "assess", "ranking_notes"]

MIN_RUN_S = 0.5
MIN_REQUESTS = 1000
MIN_N_ZERO_SPREAD = 3
LITTLE_TOLERANCE = 0.25
CLIFF_RATIO = 10.0
TOO_GOOD_RATIO = 1.5
COUNT_UNITS = {"count", "-"}
LOAD_KEYS = ("connections", "clients", "concurrency")


# --- one run of a tool: the sibling metrics of a sample --------------------------------------
def run_key(r: SampleRow) -> tuple:
    return r.platform, r.workload, r.benchmark, r.repetition, json.dumps(r.params, sort_keys=True, default=str)


class RunIndex:
    """metric -> value for each run of a tool (one repetition at one point on one platform)."""

    def __init__(self, rows: Iterable[SampleRow]):
        self.runs: dict[tuple, dict[str, float]] = {}
        for r in rows:
            if r.status == "ok" and r.value is not None:
                self.runs.setdefault(run_key(r), {})[r.metric] = r.value

    def siblings(self, r: SampleRow) -> dict[str, float]:
        return self.runs.get(run_key(r), {})


@dataclass(frozen=True)
class ToolModel:
    """What testbed knows of a load generator's runs: how long one lasted, and for closed-loop
    tools which numbers Little's law ties together."""

    rate: str  # the completed-operations-per-second metric
    seconds: Callable[[dict, float], float | None]  # (params, rate) -> run duration
    latency: str | None = None  # mean latency metric, for closed-loop tools
    latency_to_s: float = 1.0
    in_flight: Callable[[dict], int] | None = None  # at most this many operations outstanding


def _param(key: str) -> Callable[[dict, float], float | None]:
    def seconds(params: dict, rate: float) -> float | None:
        v = params.get(key)
        return float(v) if isinstance(v, (int, float)) else None
    return seconds


def _count(key: str) -> Callable[[dict, float], float | None]:
    """A count-bound run (N requests or operations) lasts N / rate."""
    def seconds(params: dict, rate: float) -> float | None:
        n = params.get(key)
        return n / rate if isinstance(n, (int, float)) and rate > 0 else None
    return seconds


def _time_or_count(duration: str, count: str) -> Callable[[dict, float], float | None]:
    """A tool bound by time or, when the run says so, by a count (memaslap -t or -x)."""
    by_time, by_count = _param(duration), _count(count)
    return lambda params, rate: by_time(params, rate) if duration in params else by_count(params, rate)


TOOLS: dict[str, ToolModel] = {
    "wrk": ToolModel("requests_per_s", _param("duration_s"), "latency_avg_ms", 1e-3,
                     lambda p: int(p["connections"])),
    "redis-benchmark": ToolModel("requests_per_s", _count("requests"), "latency_avg_ms", 1e-3,
                                 lambda p: int(p["clients"]) * int(p.get("pipeline", 1))),
    "memaslap": ToolModel("ops_per_s", _time_or_count("duration_s", "operations"), "latency_avg_us", 1e-6,
                          lambda p: int(p["concurrency"])),
    # ab's mean time per request is over the concurrent requests, so Little's law ties it to -c.
    "ab": ToolModel("requests_per_s", _count("requests"), "latency_avg_ms", 1e-3, lambda p: int(p["concurrency"])),
    # netperf's _RR tests have exactly one transaction outstanding; _STREAM tests are not closed-loop.
    "netperf": ToolModel("transactions_per_s", _param("length_s"), "latency_mean_us", 1e-6, lambda p: 1),
}


def tool_of(g: Group) -> ToolModel | None:
    return TOOLS.get(g.benchmark_kind or g.benchmark)


def _add(g: Group, platform: str, flag: Flag) -> None:
    s = g.per_platform[platform]
    if not any(f.name == flag.name for f in s.flags):
        s.flags.append(flag)


# --- too short ---------------------------------------------------------------------------------
def check_too_short(groups: list[Group], index: RunIndex) -> None:
    for g in groups:
        tool = tool_of(g)
        for platform, rows in g.samples.items():
            short = []
            for r in rows:
                sib = index.siblings(r)
                rate = sib.get(tool.rate) if tool else None
                if tool is None or rate is None or rate <= 0:
                    continue
                seconds = tool.seconds(r.params, rate)
                if seconds is None:
                    continue
                ops = rate * seconds
                if seconds < MIN_RUN_S or ops < MIN_REQUESTS:
                    short.append((seconds, ops))
            if short:
                seconds = min(x for x, _ in short)
                ops = min(o for _, o in short)
                why = []
                if seconds < MIN_RUN_S:
                    why.append(f"the shortest lasted {seconds * 1000:.0f} ms (under {MIN_RUN_S:g} s the tool's clock "
                               f"quantizes the rate)")
                if ops < MIN_REQUESTS:
                    why.append(f"the smallest completed {ops:,.0f} requests (under {MIN_REQUESTS:,} its rate and "
                               f"percentiles rest on too few)")
                _add(g, platform, Flag("too short", f"{len(short)} of {len(rows)} runs too short: {'; '.join(why)}; "
                                                    f"run it longer"))
                continue
            s = g.per_platform[platform]
            # Every run exactly 0 % (e.g. no TCP retransmission): an absence of events, not a coarse clock.
            no_events = s.max == 0 and g.unit == "%"
            if s.n >= MIN_N_ZERO_SPREAD and s.min == s.max and g.unit not in COUNT_UNITS and not no_events:
                _add(g, platform, Flag("too short", f"zero spread across {s.n} runs ({fmt(s.min or 0)} {g.unit} "
                                                    f"each): a quantized or discrete output, not precision"))


# --- inconsistent (Little's law) ---------------------------------------------------------------
def check_little(groups: list[Group], index: RunIndex) -> None:
    """Flag throughput and mean-latency groups of closed-loop runs that imply more requests in
    flight than the tool had connections."""
    for g in groups:
        tool = tool_of(g)
        if tool is None or tool.latency is None or tool.in_flight is None or g.metric not in (tool.rate, tool.latency):
            continue
        for platform, rows in g.samples.items():
            bad = []
            for r in rows:
                sib = index.siblings(r)
                rate, lat = sib.get(tool.rate), sib.get(tool.latency)
                if rate is None or lat is None:
                    continue
                try:
                    limit = tool.in_flight(r.params)
                except (KeyError, TypeError, ValueError):
                    continue
                implied = rate * lat * tool.latency_to_s
                if implied > limit * (1 + LITTLE_TOLERANCE):
                    bad.append((implied, rate, lat, limit))
            if bad:
                implied, rate, lat, limit = sorted(bad)[len(bad) // 2]  # the median offending run
                unit = "ms" if tool.latency_to_s == 1e-3 else "us"
                _add(g, platform, Flag("inconsistent", f"{len(bad)} of {len(rows)} runs: {tool.rate} {fmt(rate)} x "
                                                       f"{tool.latency} {fmt(lat)} {unit} = {implied:.1f} in flight, "
                                                       f"more than the {limit} connection{'s' if limit != 1 else ''} "
                                                       f"of a closed loop (Little's law, {LITTLE_TOLERANCE:.0%} "
                                                       f"tolerance): one of the two numbers is wrong"))


# --- cliff ----------------------------------------------------------------------------------
SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kKmMgG]?)")
SIZE_MULT = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def numeric(v: Any) -> float | None:
    """A sweep value as a number: 20, 1.5, '16k.bin' -> 16384; None when it has no magnitude."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    m = SIZE_RE.match(str(v))
    return float(m.group(1)) * SIZE_MULT[m.group(2).lower()] if m else None


def dependent_keys(points: list[dict], key: str) -> set[str]:
    """Keys whose value is a function of `key` over these points (wrk's threads follow connections)."""
    out = set()
    for other in {k for p in points for k in p} - {key}:
        mapping: dict[str, set[str]] = {}
        for p in points:
            mapping.setdefault(json.dumps(p.get(key), default=str), set()).add(json.dumps(p.get(other), default=str))
        if all(len(v) == 1 for v in mapping.values()) and len({next(iter(v)) for v in mapping.values()}) > 1:
            out.add(other)
    return out


def sweep_lines(groups: list[Group], key: str) -> list[list[Group]]:
    """The groups of one metric split into lines along `key` (other sweep keys fixed), in key order."""
    points = [g.point for g in groups]
    ignore = dependent_keys(points, key) | {key}
    lines: dict[str, list[Group]] = {}
    for g in groups:
        if key not in g.point or numeric(g.point[key]) is None:
            continue
        rest = json.dumps({k: v for k, v in g.point.items() if k not in ignore}, sort_keys=True, default=str)
        lines.setdefault(rest, []).append(g)
    return [sorted(line, key=lambda g: numeric(g.point[key]) or 0.0) for line in lines.values() if len(line) >= 2]


def check_cliffs(groups: list[Group]) -> None:
    from .summary import groups_by_metric

    for metric_groups in groups_by_metric(groups).values():
        d = direction(metric_groups[0].unit)
        if d is None or len(metric_groups) < 2:
            continue
        keys = {k for g in metric_groups for k in g.point}
        for key in sorted(keys):
            for line in sweep_lines(metric_groups, key):
                for left, right in itertools.pairwise(line):
                    scale = max(numeric(left.point[key]) or 1, numeric(right.point[key]) or 1) / \
                        max(min(numeric(left.point[key]) or 1, numeric(right.point[key]) or 1), 1e-12)
                    for platform in set(left.per_platform) & set(right.per_platform):
                        a, b = left.per_platform[platform].median, right.per_platform[platform].median
                        if a is None or b is None or a <= 0 or b <= 0:
                            continue
                        # worse / better as a factor >= 1, and which of the two is the worse point
                        worse_right = (b < a) if d == "higher" else (b > a)
                        factor = max(a, b) / min(a, b)
                        if factor > CLIFF_RATIO * scale:
                            bad, good = (right, left) if worse_right else (left, right)
                            _add(bad, platform, Flag("cliff", f"{factor:.0f}x worse than at {key}={good.point[key]} "
                                                              f"({fmt(good.per_platform[platform].median or 0)} -> "
                                                              f"{fmt(bad.per_platform[platform].median or 0)} "
                                                              f"{bad.unit}); more than {CLIFF_RATIO:g}x beyond the "
                                                              f"sweep's own scale ({scale:g}x): look for timeouts"))


# --- too good, overlap, wide ------------------------------------------------------------------
def check_too_good(groups: list[Group], kinds: dict[str, str]) -> None:
    native = next((p for p, k in kinds.items() if k == "native"), None)
    if native is None:
        return
    for g in groups:
        base = g.per_platform.get(native)
        if direction(g.unit) != "higher" or base is None or not base.median or base.median <= 0:
            continue
        for platform, s in g.per_platform.items():
            if platform == native or s.median is None:
                continue
            ratio = s.median / base.median
            if ratio > TOO_GOOD_RATIO:
                _add(g, platform, Flag("too good", f"{ratio:.1f}x native ({native}) on the same host and run: too "
                                                   f"good to be true until explained (check what was measured)"))


def overlapping(r: SampleRow) -> list[str]:
    inter = r.provenance.get("interference")
    if not isinstance(inter, dict):
        return []
    found = inter.get("overlap") or []
    return [str(o.get("run_id", o)) if isinstance(o, dict) else str(o) for o in found]


def check_overlap(groups: list[Group]) -> None:
    for g in groups:
        for platform, rows in g.samples.items():
            hit = [r for r in rows if overlapping(r)]
            if hit:
                runs = sorted({o for r in hit for o in overlapping(r)})
                _add(g, platform, Flag("overlap", f"{len(hit)} of {len(rows)} samples measured while testbed run(s) "
                                                  f"{', '.join(runs)} were live on the same CPUs"))


def assess(groups: list[Group], index: RunIndex, kinds: dict[str, str]) -> None:
    check_too_short(groups, index)
    check_little(groups, index)
    check_cliffs(groups)
    check_too_good(groups, kinds)
    check_overlap(groups)


# --- ranking lines -------------------------------------------------------------------------
def ranking_text(r: Ranking, unit: str) -> str:
    """`native 27.9 < runc 67.8 ~ gvisor 70.1 ms`: `<` where the test separates neighbours, `~` where not."""
    parts = [f"{r.order[0]} {fmt(r.medians[r.order[0]])}"]
    for t, nxt in zip(r.adjacent(), r.order[1:]):
        parts.append(f"{'<' if t.significant else '~'} {nxt} {fmt(r.medians[nxt])}")
    return " ".join(parts) + f" {unit}"


RANKING_LEGEND = ("rankings: `<` where the Mann-Whitney U test (two-sided, Holm-adjusted over the platform pairs "
                  "of that metric) separates neighbours at p < 0.05, `~` where it does not")
MANY_REPETITIONS = 10_000


def ratio_words(ratio: float) -> str:
    r = max(ratio, 1 / ratio)
    return f"{r:.1f}x apart" if r >= 2 else f"{r - 1:.1%} apart"


def ranking_notes(g: Group) -> list[str]:
    """One line with the order (RANKING_LEGEND explains `<` and `~`); for each unresolved neighbour
    pair, how far apart it is and how many repetitions would resolve it."""
    r = g.ranking
    if r is None:
        return []
    lines = [f"{g.label}: {ranking_text(r, g.unit)} ({r.direction} is better)"]
    for lo, hi in zip(r.order, r.order[1:]):
        t = r.pair(lo, hi)
        if t is None or t.significant:
            continue
        apart = ratio_words(t.ratio.point) if t.ratio else "medians apart"
        n = t.repetitions_needed
        if n is None:
            need = "equal medians: nothing to resolve"
        elif n > MANY_REPETITIONS:
            need = f"more than {MANY_REPETITIONS:,} repetitions per platform would be needed: no difference worth resolving"
        else:
            need = f"about {n:,} repetitions per platform would resolve a difference of this size at this spread"
        lines.append(f"  {lo} ~ {hi}: {apart}, p {fmt_p(t.p)} (adjusted {fmt_p(t.p_adjusted)}); {need}")
    return lines
