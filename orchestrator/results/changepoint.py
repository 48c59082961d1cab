"""Change points in a nightly series, and whether the latest one is real.

Each night is one observation: the run's median for the series. Between-night drift is several
times the within-run noise on real machines, so a test on within-run variance alone raises false
alarms; everything here works on the nightly medians first and uses the raw samples only as a
second, required confirmation.

1. Segment the nights (log scale, standardised by a robust between-night noise estimate) with
   ruptures' PELT (or Binseg), minimum segment 2 nights, then merge away every split the nightly
   t-test does not support (Otava's merge step), so a single odd night in the past is not a
   change point and tonight's baseline is not cut short by a spurious one.
2. Candidates for "the latest change": tonight alone, and the last two nights, each against the
   last segment of the nights before them (a change that appeared tonight or yesterday cannot be
   a 2-night segment of the history yet); and the detector's last change point when its segment
   reaches tonight (a regression that persists). Alpha is split between them by Bonferroni
   (ALPHA_SHARES); the searched one also pays for the split points it was chosen among. Tonight
   must sit on the "after" side of a candidate; the most significant one is kept.
3. Confirmation: Student's t on the log nightly medians of the two segments (pooled variance,
   floored at the within-run standard error of a median: zero spread is not precision) and
   Mann-Whitney U on the raw samples of the two segments. In the default mode both must agree
   (p = the larger of the two, an intersection-union test). Benjamini-Hochberg across the series
   of a night and the magnitude threshold are applied by the caller (nightly.py).

benchmarks/detection_power.py measures the false-alarm rate and detection power of each choice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Sequence

import numpy as np
from scipy import stats

from ..errors import ConfigError
import itertools

CONFIRM_MODES = ("both", "nights", "raw")
# Bonferroni split of alpha between the three candidates (see candidates()): half to tonight alone,
# a quarter to the last two nights, a quarter to the searched change point (itself divided among
# the split points it was chosen from). Chosen with benchmarks/detection_power.py: it holds false
# alarms under alpha/2 per series and night whatever the noise, where unsplit alphas did not.
ALPHA_SHARES = (2.0, 4.0, 4.0)
MERGE_ALPHA = 0.01  # a split of the history the nightly t-test does not support is merged away
MIN_SIZE = 2  # nights; a change point needs two nights on each side


@dataclass(frozen=True)
class DetectorConfig:
    """How change points are found and confirmed (defaults chosen from benchmarks/detection_power.py)."""

    method: str = "pelt"      # pelt | binseg | edivisive (apache-otava, optional)
    penalty: float = 5.0      # PELT/Binseg penalty, times ln(n), on the standardised log series
    confirm: str = "both"     # both | nights | raw: which test(s) must reject
    alpha: float = 0.02       # false-discovery rate across a night's series (Benjamini-Hochberg)
    min_size: int = MIN_SIZE


@dataclass(frozen=True)
class Segment:
    start: int  # index of the first night
    stop: int   # one past the last night

    @property
    def nights(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Change:
    """A change between two adjacent segments of nights (for the latest change, `after` ends with tonight)."""

    before: Segment
    after: Segment
    rel_change: float            # geometric mean of after / before nightly medians, minus 1
    ci: tuple[float, float]      # 95% CI of rel_change (Student's t on the log scale)
    p_nights: float              # Student's t on log nightly medians, two-sided
    raw_before: tuple[float, ...] = field(repr=False)  # the raw samples of each side, for the U test
    raw_after: tuple[float, ...] = field(repr=False)
    bonferroni: float = 1.0      # factor on p for the share of alpha this candidate gets (ALPHA_SHARES)

    @property
    def first_night(self) -> int:
        return self.after.start

    @cached_property
    def p_raw(self) -> float:
        """Mann-Whitney U on the raw samples of the two segments, two-sided (computed when asked:
        it is the slow part, and a candidate whose nightly test already fails never needs it)."""
        if not self.raw_before or not self.raw_after:
            return 1.0
        return float(stats.mannwhitneyu(self.raw_after, self.raw_before, alternative="two-sided").pvalue)


# --- segmentation ---------------------------------------------------------------------------

def within_se(raw: Sequence[Sequence[float]]) -> float:
    """Standard error of one night's median on the log scale, from the within-run spread.

    Pooled within-night SD of log samples, times sqrt(pi/2)/sqrt(n) (the median's efficiency
    for normal noise); 0 when no night has two samples.
    """
    ss, df, counts = 0.0, 0, []
    for values in raw:
        v = np.log(np.asarray([x for x in values if x > 0], dtype=float))
        if len(v) >= 2:
            ss += float(((v - v.mean()) ** 2).sum())
            df += len(v) - 1
            counts.append(len(v))
    if not df:
        return 0.0
    return math.sqrt(ss / df) * math.sqrt(math.pi / 2) / math.sqrt(float(np.median(counts)))


def noise_scale(y: np.ndarray, floor: float) -> float:
    """Robust between-night SD of a log series: MAD of successive differences / sqrt(2).

    Differences are insensitive to a step; the floor (within-run SE of a median) keeps a series
    whose nights happen to agree from looking infinitely precise.
    """
    if len(y) >= 3:
        d = np.diff(y)
        mad = float(stats.median_abs_deviation(d, scale="normal")) / math.sqrt(2)
    else:
        mad = 0.0
    return max(mad, floor, 1e-9)


def _pelt(z: np.ndarray, pen: float, min_size: int) -> list[int]:
    """PELT with the l2 cost, through ruptures' C implementation (KernelCPD, linear kernel: the same cost)."""
    import ruptures as rpt

    algo = rpt.KernelCPD(kernel="linear", min_size=min_size, jump=1).fit(z.reshape(-1, 1))
    return [int(b) for b in algo.predict(pen=pen)[:-1]]  # the last "breakpoint" is len(z)


def _binseg(z: np.ndarray, pen: float, min_size: int) -> list[int]:
    import ruptures as rpt

    algo = rpt.Binseg(model="l2", min_size=min_size, jump=1).fit(z)
    return [int(b) for b in algo.predict(pen=pen)[:-1]]


def _edivisive(z: np.ndarray, pen: float, min_size: int) -> list[int]:
    """apache-otava's E-divisive (Hunter's split/merge); `pen` is its max p-value here, and it has no
    minimum segment length (a single odd night can be a change point: the confirmation must catch it)."""
    try:
        from otava.analysis import compute_change_points
    except ImportError:
        raise ConfigError("detector method edivisive needs apache-otava: pip install apache-otava") from None
    points, _ = compute_change_points(list(map(float, z)), window_len=30, max_pvalue=pen)
    return sorted(int(cp.index) for cp in points if 0 < cp.index < len(z))


SEGMENTERS: dict[str, Callable[[np.ndarray, float, int], list[int]]] = {
    "pelt": _pelt,
    "binseg": _binseg,
    "edivisive": _edivisive,
}


def breakpoints(y: np.ndarray, floor: float, cfg: DetectorConfig) -> list[int]:
    """Indices where a new segment of the log series y starts (never 0 or len(y)).

    The detector's split points, then a merge step (as in Otava/Hunter): the weakest split whose
    two segments do not differ on the nightly t-test at MERGE_ALPHA is removed, until every split
    left does. A spurious split would leave tonight a two-night baseline and no power.
    """
    n = len(y)
    if n < 2 * cfg.min_size:
        return []
    z = (y - np.median(y)) / noise_scale(y, floor)
    if cfg.method not in SEGMENTERS:
        raise ConfigError(f"detector method {cfg.method!r}: expected one of {', '.join(SEGMENTERS)}")
    pen = cfg.penalty if cfg.method == "edivisive" else cfg.penalty * math.log(n)
    bkps = SEGMENTERS[cfg.method](z, pen, cfg.min_size)
    while bkps:
        segs = segments(n, bkps)
        ps = [nightly_t(y, a, b, floor)[2] for a, b in itertools.pairwise(segs)]
        weakest = int(np.argmax(ps))
        if ps[weakest] <= MERGE_ALPHA:
            break
        del bkps[weakest]
    return bkps


def segments(n: int, bkps: Sequence[int]) -> list[Segment]:
    edges = [0, *bkps, n]
    return [Segment(a, b) for a, b in itertools.pairwise(edges)]


# --- confirmation ---------------------------------------------------------------------------

def nightly_t(y: np.ndarray, before: Segment, after: Segment, floor: float) -> tuple[float, float, float]:
    """Student's t between two segments of log nightly medians: (difference of means, 95% half-width, p).

    Pooled variance (one night after tonight's change still has the before segment's variance),
    floored at the within-run SE of a median.
    """
    a, b = y[after.start:after.stop], y[before.start:before.stop]
    na, nb = len(a), len(b)
    df = na + nb - 2
    ss = float(((a - a.mean()) ** 2).sum() + ((b - b.mean()) ** 2).sum())
    sp = max(math.sqrt(ss / df) if df > 0 else 0.0, floor, 1e-9)
    d = float(a.mean() - b.mean())
    se = sp * math.sqrt(1 / na + 1 / nb)
    if df <= 0:
        return d, math.inf, 1.0
    return d, float(stats.t.ppf(0.975, df)) * se, float(2 * stats.t.sf(abs(d) / se, df))


def compare(y: np.ndarray, raw: Sequence[Sequence[float]], before: Segment, after: Segment, floor: float,
            bonferroni: float = 1.0) -> Change:
    """Test `after` against `before`: t on log nightly medians, Mann-Whitney U on raw samples."""
    d, half, p_nights = nightly_t(y, before, after, floor)
    raw_a = tuple(x for i in range(after.start, after.stop) for x in raw[i])
    raw_b = tuple(x for i in range(before.start, before.stop) for x in raw[i])
    return Change(before, after, math.expm1(d), (math.expm1(d - half), math.expm1(d + half)), p_nights, raw_b,
                  raw_a, bonferroni)


def _lower_bound(c: Change, confirm: str) -> float:
    """A bound decisive_p never goes below, known without the U test."""
    return min(1.0, c.p_nights * c.bonferroni) if confirm in ("both", "nights") else 0.0


def decisive_p(c: Change, confirm: str) -> float:
    """The p-value that decides under a confirmation mode (Bonferroni factor included)."""
    if confirm == "both":
        p = c.p_nights if c.p_nights * c.bonferroni >= 1 else max(c.p_nights, c.p_raw)
    elif confirm == "nights":
        p = c.p_nights
    elif confirm == "raw":
        p = c.p_raw
    else:
        raise ConfigError(f"confirm mode {confirm!r}: expected one of {', '.join(CONFIRM_MODES)}")
    return min(1.0, p * c.bonferroni)


def describe_test(c: Change, confirm: str) -> str:
    """Which test(s) decided, with their p-values, for the report."""
    nights = (f"Student's t on log nightly medians ({c.before.nights} vs {c.after.nights} nights) "
              f"p={c.p_nights:.2g}")
    raw = f"Mann-Whitney U on raw samples ({len(c.raw_before)} vs {len(c.raw_after)}) p={c.p_raw:.2g}"
    text = {"both": f"{nights} and {raw}, both required", "nights": nights, "raw": raw}[confirm]
    return text + (f"; p x{c.bonferroni:g} (Bonferroni share of alpha)" if c.bonferroni != 1 else "")



def _tonight_after(y: np.ndarray, c: Change) -> bool:
    """Tonight sits on the after side of the change (not back where the before segment was)."""
    d = math.log1p(c.rel_change)
    tonight = float(y[-1] - y[c.before.start:c.before.stop].mean())
    return d != 0 and tonight * d > 0 and abs(tonight) >= abs(d) / 2


def _log_series(medians: Sequence[float]) -> np.ndarray | None:
    values = np.asarray(medians, dtype=float)
    return np.log(values) if len(values) and (values > 0).all() else None


def candidates(medians: Sequence[float], raw: Sequence[Sequence[float]], cfg: DetectorConfig) -> list[Change]:
    """Candidates for the change that tonight (the last night) belongs to.

    `medians[i]` is night i's median, `raw[i]` its ok samples; all nights share one configuration.
    Two candidates at fixed places, so their tests are exact: tonight alone, and the last two
    nights, each against the last segment of the nights before them (a change that appeared
    tonight or yesterday cannot be a 2-night segment of the history yet). And one the detector
    searched for: the last change point of the whole series, when its segment reaches tonight and
    is longer than two nights (a regression that persists). Each p-value carries its Bonferroni
    factor (ALPHA_SHARES; the searched one also for the split points it was chosen among, since a
    searched split always looks significant). Only candidates with tonight on their after side are
    returned.
    """
    y = _log_series(medians)
    if y is None or len(y) < 3:
        return []
    n = len(y)
    floor = within_se(raw)
    found = []
    for tail, share in ((1, ALPHA_SHARES[0]), (2, ALPHA_SHARES[1])):
        if n - tail >= 2:
            base = segments(n - tail, breakpoints(y[:-tail], floor, cfg))[-1]
            found.append(compare(y, raw, base, Segment(n - tail, n), floor, share))
    whole = segments(n, breakpoints(y, floor, cfg))
    if len(whole) >= 2 and whole[-1].nights > 2:
        looks = max(1, n - 2 * cfg.min_size + 1)
        found.append(compare(y, raw, whole[-2], whole[-1], floor, ALPHA_SHARES[2] * looks))
    return [c for c in found if _tonight_after(y, c)]


def select(found: Sequence[Change], confirm: str) -> Change | None:
    """The most significant candidate under `confirm` (the longer after segment on a tie)."""
    best: Change | None = None
    best_key = (2.0, 0)
    # Branch and bound: a candidate whose lower bound cannot beat the best is never U-tested.
    for c in sorted(found, key=lambda c: _lower_bound(c, confirm)):
        if _lower_bound(c, confirm) > best_key[0]:
            break
        key = (decisive_p(c, confirm), -c.after.nights)
        if key < best_key:
            best, best_key = c, key
    return best


def latest_change(medians: Sequence[float], raw: Sequence[Sequence[float]], cfg: DetectorConfig) -> Change | None:
    """The most significant candidate for tonight's change, or None.

    No threshold is applied here: the caller adjusts p across the series of a night
    (Benjamini-Hochberg) and applies the magnitude threshold.
    """
    return select(candidates(medians, raw, cfg), cfg.confirm)


def change_points(medians: Sequence[float], raw: Sequence[Sequence[float]], cfg: DetectorConfig) -> list[Change]:
    """Every change point of a series (one configuration), each tested against its neighbour segment.

    For history displays: each p-value carries a Bonferroni factor for the split points searched;
    none is adjusted across series.
    """
    y = _log_series(medians)
    if y is None:
        return []
    floor = within_se(raw)
    segs = segments(len(y), breakpoints(y, floor, cfg))
    looks = max(1, len(y) - 2 * cfg.min_size + 1)
    return [compare(y, raw, a, b, floor, looks) for a, b in itertools.pairwise(segs)]


# --- verdicts ---------------------------------------------------------------------------------
# Which way is better comes from the unit (stats.direction): lower for ms/us/ns/s, higher for req/s,
# ops/s, trans/s, Mbit/s, MiB/s, Gbit/s, none for counts (a change without a verdict).

def classify(c: Change | None, p: float, alpha: float, threshold: float, direction: str | None) -> str:
    """regression | improvement | change (a unit without a direction) | ok.

    `direction` is stats.direction(unit). `p` is the change's decisive p-value after any
    adjustment across series; a change must be
    significant at `alpha` and at least `threshold` (relative) in size.
    """
    if c is None or p > alpha or abs(c.rel_change) < threshold:
        return "ok"
    if direction is None:
        return "change"
    worse = c.rel_change > 0 if direction == "lower" else c.rel_change < 0
    return "regression" if worse else "improvement"
