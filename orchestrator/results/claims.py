"""Verdicts on a paper's claims from a run's samples, and the published numbers beside ours.

Every claim gets one of four verdicts, the numbers and the test that decided it:

  reproduced      the data support the claim at 95%: for `ratio` and `close`, the whole bootstrap
                  CI of median(platform) / median(baseline) is on the claimed side of the bound (inside
                  the band); for `order`, every neighbour in the claimed order differs in the claimed
                  direction by the Mann-Whitney U test (Holm over the claim's pairs)
  not reproduced  the data contradict it at 95%: the whole CI on the other side (outside the band), or
                  a neighbour significantly in the opposite order
  inconclusive    neither; the detail says how many repetitions per platform would decide it at the
                  observed spread (stats.repetitions_needed)
  not comparable  our numbers cannot speak to the paper's: a platform has no successful sample (not
                  runnable here: an image missing; or failed), a VM or unikernel ran under TCG
                  (emulation, where the paper used KVM), or the claim needs hardware we lack (SR-IOV)

A claim over a sweep is judged at every point it covers: not reproduced if any point contradicts
it, reproduced if every point supports it, otherwise inconclusive.

Inputs are what a run stored: its samples and the paper blocks recorded in its provenance
(config/papers.py's models, validated by the caller); this module computes nothing the
statistics module (stats.py) does not already provide.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..sizes import parse_size
from ..units import convert
from .numbers import fmt, fmt_p
from .stats import MIN_N_INTERVAL, RatioCI, rank, ratio_ci, repetitions_needed
from .store import SampleRow
from .summary import Group, point_text, summarize_rows

if TYPE_CHECKING:
    from ..config.papers import ClaimModel, PaperModel, PublishedModel

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NOT_COMPARABLE = "not comparable"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_COMPARABLE)

RATIO_TEST = "ratio of medians with its 95% percentile-bootstrap CI on the log scale (stats.ratio_ci)"
ORDER_TEST = "Mann-Whitney U, two-sided, Holm over the claim's platform pairs (stats.rank)"
TCG_REASON = "TCG instead of KVM: emulation, not the paper's setup"


@dataclass
class PointVerdict:
    point: dict[str, Any]
    verdict: str
    detail: str
    numbers: dict[str, Any] = field(default_factory=dict)
    repetitions: int | None = None  # per platform, to decide an inconclusive point


@dataclass
class Verdict:
    """One claim's verdict with what decided it."""

    id: str
    kind: str
    statement: str
    verdict: str
    detail: str
    test: str
    source: str
    metric: str
    platforms: list[str]
    repetitions: int | None = None
    reason: str | None = None  # why not comparable
    points: list[PointVerdict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class PublishedRow:
    """A published number beside ours (converted to the paper's unit when both measure the same thing)."""

    system: str
    what: str
    published: float
    unit: str
    approx: bool
    ours_platform: str | None = None
    ours: float | None = None  # our median, in the published unit when convertible
    ours_unit: str | None = None
    ours_n: int = 0
    published_ratio: float | None = None  # to the paper's baseline system
    ours_ratio: float | None = None  # to our platform standing for that baseline
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


# --- selecting samples -----------------------------------------------------------------------
def _same(a: Any, b: Any) -> bool:
    if str(a) == str(b):
        return True
    try:  # file sizes: 4k == 4k.bin == 4096
        return parse_size(a) == parse_size(b)
    except (ValueError, TypeError):
        return False


def group_params(g: Group) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for rows in g.samples.values():
        if rows:
            params = dict(rows[0].params)
            break
    params.update(g.point)
    return params


def matching_groups(groups: Iterable[Group], metric: str, workload: str | None, benchmark: str | None,
                    point: dict[str, Any]) -> list[Group]:
    out = []
    for g in groups:
        if g.metric != metric or (workload and g.workload != workload) or (benchmark and g.benchmark != benchmark):
            continue
        params = group_params(g)
        if all(k in params and _same(params[k], v) for k, v in point.items()):
            out.append(g)
    return out


@dataclass
class PlatformFacts:
    """What the run says of each platform: accelerator, NIC, and why cells did not run."""

    accel: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    accel_reason: dict[str, str] = field(default_factory=dict)
    nic: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    not_runnable: dict[str, str] = field(default_factory=dict)
    failures: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    measured: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, rows: Iterable[SampleRow]) -> PlatformFacts:
        f = cls()
        for r in rows:
            f.measured.add(r.platform)
            if r.provenance.get("accel"):
                f.accel[r.platform].add(str(r.provenance["accel"]))
                f.accel_reason.setdefault(r.platform, str(r.provenance.get("accel_reason") or ""))
            if r.provenance.get("nic"):
                f.nic[r.platform].add(str(r.provenance["nic"]))
            if r.status == "not_runnable":
                f.not_runnable.setdefault(r.platform, r.reason or "not runnable here")
            elif r.status != "ok" and r.reason:
                f.failures[r.platform].append(r.reason)
        return f


def not_comparable_reason(claim: ClaimModel, groups: list[Group], facts: PlatformFacts,
                          published: PublishedModel | None) -> str | None:
    reasons = []
    for p in claim.platforms:
        if not any(g.values(p) for g in groups):
            if p in facts.not_runnable:
                reasons.append(f"{p} not runnable here: {facts.not_runnable[p]}")
            elif p not in facts.measured:
                reasons.append(f"{p} was not measured in this run")
            else:
                why = facts.failures.get(p) or [g.failures[p][0] for g in groups if g.failures.get(p)] or ["no sample"]
                reasons.append(f"{p} has no successful sample of {claim.metric} ({why[0]})")
    tcg = [p for p in claim.platforms if "tcg" in facts.accel.get(p, set())]
    if tcg:  # said even when another platform is missing: it would not be comparable with the image either
        accel_reason = facts.accel_reason.get(tcg[0])
        reasons.append(f"{TCG_REASON} ({', '.join(tcg)} ran under TCG{': ' + accel_reason if accel_reason else ''})")
    if reasons:
        return "; ".join(reasons)
    if "kvm" in claim.requires:
        no_kvm = [p for p in claim.platforms if "kvm" not in facts.accel.get(p, set())]
        if no_kvm:
            return f"the claim is about KVM guests; {', '.join(no_kvm)} did not run under KVM here"
    if "sriov" in claim.requires:
        other = [f"{p} ({'/'.join(sorted(facts.nic.get(p, set()))) or 'no NIC recorded'})" for p in claim.platforms
                 if facts.nic.get(p) != {"sriov"}]
        if other:
            nic = published.nic if published and published.nic else "an SR-IOV NIC"
            return f"a different hardware class: the paper used {nic}; here {', '.join(other)}"
    return None


# --- judging one point -----------------------------------------------------------------------
def _n(values: Sequence[float]) -> int:
    return len(values)


def _ci_text(r: RatioCI) -> str:
    return f"{fmt(r.point)}x" + (f", 95% CI [{fmt(r.low)}, {fmt(r.high)}]" if r.low is not None else
                                 " (no interval: n below 5)")


def _scaled(b: Sequence[float], bound: float) -> list[float]:
    return [v * bound for v in b]


def judge_ratio(claim: ClaimModel, g: Group, h: Group | None = None) -> PointVerdict:
    """median(platform in g) / median(baseline in h); h is g unless the claim has a baseline_point."""
    h = h or g
    p, base = claim.platform or "", claim.baseline or ""
    a, b = g.values(p), h.values(base)
    left, right = p, base
    if claim.baseline_point:  # name the two points: gvisor[test=openclose_host-tmpfs] / gvisor[test=openclose_tmp]
        keys = sorted(claim.baseline_point)
        gp, hp = group_params(g), group_params(h)
        left = f"{p}[{_point_label({k: gp.get(k) for k in keys})}]"
        right = f"{base}[{_point_label({k: hp.get(k) for k in keys})}]"
    ma, mb = g.per_platform[p].median, h.per_platform[base].median
    numbers: dict[str, Any] = {"median": {left: ma, right: mb}, "n": {left: _n(a), right: _n(b)}, "unit": g.unit}
    if ma is not None and mb is not None:
        numbers["difference"] = ma - mb  # e.g. a platform's overhead over native, in the metric's unit
    r = ratio_ci(a, b)
    if r is None:
        return PointVerdict(g.point, NOT_COMPARABLE, f"a ratio of {g.metric} is undefined (a value is not positive)",
                            numbers)
    numbers["ratio"] = r._asdict()
    p, base = left, right
    lo: float | None
    hi: float | None
    if claim.kind == "close":
        w = (claim.within_pct or 0) / 100
        lo, hi = 1 - w, 1 + w
        band = f"within {claim.within_pct:g}% of 1 ([{fmt(lo)}, {fmt(hi)}])"
    else:
        lo, hi = claim.at_least, claim.at_most
        band = " and ".join(x for x in (f">= {lo:g}" if lo is not None else "",
                                         f"<= {hi:g}" if hi is not None else "") if x)
    d = numbers.get("difference")
    diff = f"; {p} - {base} = {'+' if d >= 0 else '-'}{fmt(abs(d))} {g.unit}" if d is not None else ""
    text = f"{p}/{base} = {_ci_text(r)}; claimed {band} (n {_n(a)}/{_n(b)}){diff}"
    if r.low is None or r.high is None:
        need = [n for x in (lo, hi) if x is not None and (n := repetitions_needed(a, _scaled(b, x)))]
        reps = max([MIN_N_INTERVAL, *need])
        return PointVerdict(g.point, INCONCLUSIVE, f"{text}; about {reps} repetitions per platform would decide it",
                            numbers, reps)
    inside = (lo is None or r.low >= lo) and (hi is None or r.high <= hi)
    outside = (lo is not None and r.high < lo) or (hi is not None and r.low > hi)
    if inside:
        return PointVerdict(g.point, REPRODUCED, text, numbers)
    if outside:
        return PointVerdict(g.point, NOT_REPRODUCED, text, numbers)
    crossed = [x for x in (lo, hi) if x is not None and r.low < x < r.high]
    need = [n for x in crossed if (n := repetitions_needed(a, _scaled(b, x)))]
    if need:
        reps = max(need)
        return PointVerdict(g.point, INCONCLUSIVE, f"{text}; the CI crosses {', '.join(f'{x:g}' for x in crossed)}: "
                            f"about {reps} repetitions per platform would decide it", numbers, reps)
    return PointVerdict(g.point, INCONCLUSIVE, f"{text}; the ratio sits on the bound: no number of repetitions "
                        f"decides it at this spread", numbers)


def judge_order(claim: ClaimModel, g: Group) -> PointVerdict:
    order = claim.platforms
    increasing = claim.increasing is not None
    values: dict[str, Sequence[float]] = {p: g.values(p) for p in order}
    ranking = rank(values, "lower")
    numbers: dict[str, Any] = {"median": {p: g.per_platform[p].median for p in order},
                               "n": {p: _n(v) for p, v in values.items()}, "unit": g.unit, "pairs": []}
    assert ranking is not None  # every platform has values (checked before)
    contradicted, unresolved, parts = [], [], []
    reps: list[int] = []
    for a, b in itertools.pairwise(order):
        t = ranking.pair(a, b)
        assert t is not None
        ma, mb = ranking.medians[a], ranking.medians[b]
        right = ma < mb if increasing else ma > mb
        sign = ("<" if right else ">") if increasing else (">" if right else "<")
        mark = sign if t.significant else "~"
        parts.append(f"{a} {fmt(ma)} {mark} {b} {fmt(mb)} (Holm p {fmt_p(t.p_adjusted)})")
        numbers["pairs"].append({"a": a, "b": b, "p": t.p, "p_adjusted": t.p_adjusted, "significant": t.significant,
                                 "right_order": right})
        if t.significant and not right:
            contradicted.append(f"{a}/{b}")
        elif not t.significant:
            unresolved.append(f"{a}/{b}")
            if t.repetitions_needed:
                reps.append(t.repetitions_needed)
    text = f"{'; '.join(parts)} {g.unit}"
    if contradicted:
        return PointVerdict(g.point, NOT_REPRODUCED, f"{text}; the opposite order for {', '.join(contradicted)}",
                            numbers)
    if unresolved:
        need = max(reps) if reps else None
        tail = (f"; about {need} repetitions per platform would resolve {', '.join(unresolved)}" if need else
                f"; {', '.join(unresolved)} not separated (equal medians)")
        return PointVerdict(g.point, INCONCLUSIVE, text + tail, numbers, need)
    return PointVerdict(g.point, REPRODUCED, text, numbers)


def paired(groups: list[Group], baselines: list[Group], keys: set[str]) -> list[tuple[Group, Group]]:
    """Each group with the baseline group whose parameters are the same apart from `keys`."""
    out = []
    for g in groups:
        mine = {k: v for k, v in group_params(g).items() if k not in keys}
        for h in baselines:
            theirs = group_params(h)
            if h is not g and all(k in theirs and _same(theirs[k], v) for k, v in mine.items() if k in g.point):
                out.append((g, h))
                break
    return out


def _point_label(point: dict[str, Any]) -> str:
    return point_text(point, set(point))  # every key of the point


def evaluate_claim(claim: ClaimModel, groups: list[Group], facts: PlatformFacts,
                   paper: PaperModel | None = None, published: PublishedModel | None = None) -> Verdict:
    source = claim.source or (paper.where if paper else "")
    test = ORDER_TEST if claim.kind == "order" else RATIO_TEST
    base = Verdict(claim.id, claim.kind, claim.statement, NOT_COMPARABLE, "", test, source, claim.metric,
                   claim.platforms)
    matched = matching_groups(groups, claim.metric, claim.workload, claim.benchmark, claim.point)
    if not matched:
        where = f" at {_point_label(claim.point)}" if claim.point else ""
        base.reason = base.detail = f"the run has no samples of {claim.metric}{where}"
        return base
    scope = matched
    if claim.baseline_point:
        scope = matched + matching_groups(groups, claim.metric, claim.workload, claim.benchmark,
                                          {**claim.point, **claim.baseline_point})
    reason = not_comparable_reason(claim, scope, facts, published)
    if reason:
        base.reason = base.detail = reason
        return base
    if claim.kind == "order":
        points = [judge_order(claim, g) for g in matched if all(g.values(p) for p in claim.platforms)]
    elif claim.baseline_point:
        base_point = {**claim.point, **claim.baseline_point}
        baselines = matching_groups(groups, claim.metric, claim.workload, claim.benchmark, base_point)
        if not baselines:
            base.reason = base.detail = f"the run has no samples of {claim.metric} at {_point_label(base_point)}"
            return base
        points = [judge_ratio(claim, g, h) for g, h in paired(matched, baselines, set(base_point))
                  if g.values(claim.platform or "") and h.values(claim.baseline or "")]
    else:
        points = [judge_ratio(claim, g) for g in matched if all(g.values(p) for p in claim.platforms)]
    base.points = points
    verdicts = [pv.verdict for pv in points]
    multi = len(points) > 1

    def lines(which: str) -> str:
        chosen = [pv for pv in points if pv.verdict == which]
        return "; ".join((f"[{_point_label(pv.point)}] " if multi else "") + pv.detail for pv in chosen)

    if NOT_REPRODUCED in verdicts:
        base.verdict, base.detail = NOT_REPRODUCED, lines(NOT_REPRODUCED)
        if multi:
            base.detail = f"{verdicts.count(NOT_REPRODUCED)} of {len(points)} points contradict it: " + base.detail
    elif all(v == REPRODUCED for v in verdicts):
        base.verdict = REPRODUCED
        base.detail = lines(REPRODUCED) if not multi else f"at all {len(points)} points; " + lines(REPRODUCED)
    elif NOT_COMPARABLE in verdicts and all(v == NOT_COMPARABLE for v in verdicts):
        base.verdict, base.detail = NOT_COMPARABLE, lines(NOT_COMPARABLE)
        base.reason = points[0].detail
    else:
        base.verdict = INCONCLUSIVE
        reps = [pv.repetitions for pv in points if pv.verdict == INCONCLUSIVE and pv.repetitions]
        base.repetitions = max(reps) if reps else None
        base.detail = (f"{verdicts.count(INCONCLUSIVE)} of {len(points)} points undecided: " if multi else "") + \
            lines(INCONCLUSIVE)
    return base


def evaluate_claims(suite: Any, rows: Sequence[SampleRow], groups: list[Group] | None = None) -> list[Verdict]:
    """Verdicts for `suite`'s claims (an object with .paper, .published, .claims: a SuiteModel, or a
    run's recorded paper blocks) from a run's samples."""
    rows = list(rows)
    groups = groups if groups is not None else summarize_rows(rows)
    facts = PlatformFacts.of(rows)
    return [evaluate_claim(c, groups, facts, suite.paper, suite.published) for c in suite.claims]


# --- published numbers beside ours -----------------------------------------------------------
def _median_of(groups: list[Group], ours: Any) -> tuple[float | None, str | None, int]:
    """Our median for a published value's `ours` (platform, metric, workload, benchmark, point)."""
    for g in matching_groups(groups, ours.metric, ours.workload, ours.benchmark, ours.point):
        s = g.per_platform.get(ours.platform)
        if s is not None and s.median is not None:
            return s.median, g.unit, s.n
    return None, None, 0


def published_rows(published: PublishedModel | None, groups: list[Group]) -> list[PublishedRow]:
    if published is None:
        return []
    out: list[PublishedRow] = []
    base_pub = next((v for v in published.values if v.system == published.baseline), None)
    base_ours = None
    if base_pub is not None and base_pub.ours is not None:
        base_ours = _median_of(groups, base_pub.ours)[0]
    for v in published.values:
        row = PublishedRow(v.system, v.what, v.value, v.unit, v.approx)
        if base_pub is not None:
            same = convert(base_pub.value, base_pub.unit, v.unit)
            row.published_ratio = v.value / same if same else None
        if v.ours is not None:
            o = v.ours
            median, unit, n = _median_of(groups, o)
            row.ours_platform, row.ours_n = o.platform, n
            if median is None:
                row.note = f"no successful sample of {o.metric} on {o.platform}"
            else:
                converted = convert(median, unit or "", v.unit)
                row.ours, row.ours_unit = (converted, v.unit) if converted is not None else (median, unit)
                if base_ours:
                    row.ours_ratio = median / base_ours
        out.append(row)
    return out


def verdict_counts(verdicts: Iterable[Verdict]) -> dict[str, int]:
    counts = dict.fromkeys(VERDICTS, 0)
    for v in verdicts:
        counts[v.verdict] += 1
    return counts
