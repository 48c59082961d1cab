"""Statistics that do not claim more than the data supports.

- The interval of a metric is a percentile-bootstrap 95% CI of its median: it stays inside the
  range of the values, so a non-negative quantity never gets a negative bound. Below
  MIN_N_INTERVAL repetitions there is no interval, and the reason says so.
- Tail percentiles across repetitions are named honestly: p95 needs 20 values, p99 needs 100;
  below that only `max` is reported.
- Two samples are compared with the Mann-Whitney U test (exact or an exact permutation
  distribution at small n, asymptotic beyond) and the ratio of their medians with a bootstrap CI
  computed on the log scale (always positive). A family of comparisons is corrected with Holm
  (rankings: every pair of platforms in one group) or Benjamini-Hochberg (run comparisons:
  every metric of two runs); each result names its test and correction.

Every bootstrap is seeded, so the same data gives the same interval.
"""

from __future__ import annotations

import functools
import math
import zlib
from dataclasses import asdict, dataclass, field
from typing import Literal, NamedTuple, Sequence

import numpy as np


class _LazyScipyStats:
    """scipy.stats, imported at first use: it costs most of a second, and the commands that only
    read or list results (and their one-line errors) should not pay it."""

    def __getattr__(self, name: str):
        from scipy import stats

        return getattr(stats, name)


sps = _LazyScipyStats()

CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 20240101
MIN_N_INTERVAL = 5  # fewer values: "n too small for an interval"
MIN_N_P95 = 20  # a p95 across repetitions needs at least one value above it
MIN_N_P99 = 100
WIDE_CV = 0.10  # informational: a CV above this is flagged `wide` (it does not block a ranking)
ALPHA = 0.05
EXACT_PERMUTATIONS = 20000  # Mann-Whitney's null distribution is enumerated up to this many splits

NO_INTERVAL_SMALL_N = "n too small for an interval"
NO_INTERVAL_ZERO_SPREAD = "zero spread (a quantized or discrete output), no interval"
CI_METHOD = f"percentile bootstrap of the median, {RESAMPLES} resamples, seeded"

Direction = Literal["higher", "lower"]
HIGHER_IS_BETTER_UNITS = {"req/s", "trans/s", "ops/s", "Mbit/s", "MiB/s", "Gbit/s"}
LOWER_IS_BETTER_UNITS = {"ms", "us", "ns", "s"}


def direction(unit: str) -> Direction | None:
    """'higher' or 'lower' (is better) for a unit, None when neither applies (counts)."""
    if unit in HIGHER_IS_BETTER_UNITS:
        return "higher"
    if unit in LOWER_IS_BETTER_UNITS:
        return "lower"
    return None


@dataclass
class Flag:
    """A warning attached to a platform's value: `name` is shown in tables, `detail` says why."""

    name: str  # too short | inconsistent | cliff | too good | overlap | wide
    detail: str

    def __str__(self) -> str:
        return self.name


@dataclass
class Summary:
    """One platform's values of one metric at one point."""

    n: int
    failed: int
    median: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    ci_reason: str | None = None  # why there is no interval
    mean: float | None = None
    sd: float | None = None
    cv: float | None = None
    min: float | None = None
    max: float | None = None
    p95: float | None = None  # only with n >= MIN_N_P95
    p99: float | None = None  # only with n >= MIN_N_P99
    flags: list[Flag] = field(default_factory=list)

    @property
    def wide(self) -> bool:
        return self.cv is not None and self.cv > WIDE_CV

    @property
    def has_interval(self) -> bool:
        return self.ci_low is not None and self.ci_high is not None

    def tail(self) -> tuple[str, float | None]:
        """The highest percentile this n supports, by its honest name: p99, p95, else max."""
        if self.p99 is not None:
            return "p99", self.p99
        if self.p95 is not None:
            return "p95", self.p95
        return "max", self.max

    def flag_names(self) -> list[str]:
        return list(dict.fromkeys(f.name for f in self.flags))

    def as_dict(self) -> dict:
        d = asdict(self)
        d["flags"] = [asdict(f) for f in self.flags]
        d["ci_method"] = CI_METHOD if self.has_interval else None
        d["wide"] = self.wide
        return d


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@functools.lru_cache(maxsize=4096)
def _cached_medians(data: bytes, resamples: int, seed: int) -> np.ndarray:
    x = np.frombuffer(data, dtype=float)
    # The stream is seeded by the data too: two samples never share resampling indices (which would
    # make an "independent" two-sample bootstrap a paired one), and the same data gives the same CI.
    rng = _rng(seed ^ zlib.crc32(data))
    medians = np.median(x[rng.integers(0, x.size, size=(resamples, x.size))], axis=1)
    medians.flags.writeable = False
    return medians


def _bootstrap_medians(x: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Medians of `resamples` resamples of x with replacement (numpy, vectorised; cached, since a
    platform's resamples serve its own CI and every ratio it is part of)."""
    return _cached_medians(np.ascontiguousarray(x, dtype=float).tobytes(), resamples, seed)


def _percentile_interval(stat: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(stat, [tail, 100 - tail])
    return float(low), float(high)


def median_ci(values: Sequence[float], *, confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
              seed: int = SEED) -> tuple[float, float] | None:
    """Percentile-bootstrap CI of the median; None below MIN_N_INTERVAL values.

    Percentile bounds are medians of resamples, so they lie within [min, max] of the values.
    (numpy resampling rather than scipy.stats.bootstrap: the same method, without the per-call
    validation that dominates a report of hundreds of groups.)"""
    x = np.asarray(values, dtype=float)
    if x.size < MIN_N_INTERVAL:
        return None
    return _percentile_interval(_bootstrap_medians(x, resamples, seed), confidence)


def summarize(values: Sequence[float], failed: int = 0, *, seed: int = SEED) -> Summary:
    x = np.asarray(values, dtype=float)
    n = int(x.size)
    if n == 0:
        return Summary(0, failed, ci_reason="no successful sample")
    s = Summary(n, failed, median=float(np.median(x)), mean=float(np.mean(x)), min=float(x.min()),
                max=float(x.max()))
    if n >= 2:
        s.sd = float(np.std(x, ddof=1))
        s.cv = s.sd / abs(s.mean) if s.mean else None
    if n >= MIN_N_P95:
        s.p95 = float(np.percentile(x, 95))
    if n >= MIN_N_P99:
        s.p99 = float(np.percentile(x, 99))
    if n < MIN_N_INTERVAL:
        s.ci_reason = NO_INTERVAL_SMALL_N
    elif s.min == s.max:
        s.ci_reason = NO_INTERVAL_ZERO_SPREAD
    else:
        s.ci_low, s.ci_high = _percentile_interval(_bootstrap_medians(x, RESAMPLES, seed), CONFIDENCE)
    return s


# --- two samples -----------------------------------------------------------------------------
class RatioCI(NamedTuple):
    """median(a) / median(b) and its bootstrap CI (None below MIN_N_INTERVAL on either side)."""

    point: float
    low: float | None
    high: float | None

    def excludes_one(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 1 or self.high < 1)


def ratio_ci(a: Sequence[float], b: Sequence[float], *, confidence: float = CONFIDENCE,
             resamples: int = RESAMPLES, seed: int = SEED) -> RatioCI | None:
    """Ratio of medians a/b with a percentile-bootstrap CI computed on the log scale.

    None when a median is not positive (a ratio of counts around zero means nothing)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size == 0 or y.size == 0 or np.any(x <= 0) or np.any(y <= 0):
        return None
    point = float(np.median(x) / np.median(y))
    if x.size < MIN_N_INTERVAL or y.size < MIN_N_INTERVAL:
        return RatioCI(point, None, None)
    # each side resampled independently; the ratio's percentiles are taken on the log scale
    log_ratio = np.log(_bootstrap_medians(x, resamples, seed)) - np.log(_bootstrap_medians(y, resamples, seed))
    low, high = _percentile_interval(log_ratio, confidence)
    return RatioCI(point, math.exp(low), math.exp(high))


MWU_TEST = "Mann-Whitney U (two-sided)"


def _mwu_method(x: np.ndarray, y: np.ndarray) -> str:
    """'exact', 'permutation' (small n with ties: scipy's asymptotic formula is anti-conservative
    there) or 'asymptotic' (beyond EXACT_PERMUTATIONS splits, with the tie correction)."""
    if math.comb(x.size + y.size, x.size) > EXACT_PERMUTATIONS:
        return "asymptotic"
    both = np.concatenate([x, y])
    return "permutation" if np.unique(both).size < both.size else "exact"


def mann_whitney_many(pairs: Sequence[tuple[Sequence[float], Sequence[float]]], *,
                      seed: int = SEED) -> list[float | None]:
    """Two-sided Mann-Whitney U p-values of many pairs; None where a side has fewer than 2 values.

    Pairs of the same shape and method go to scipy in one vectorised call (the per-call overhead
    dominates at the n of a benchmark). Small n is exact: the exact distribution, or with ties the
    permutation distribution enumerated in full."""
    out: list[float | None] = [None] * len(pairs)
    batches: dict[tuple[int, int, str], list[int]] = {}
    arrays = [(np.asarray(a, dtype=float), np.asarray(b, dtype=float)) for a, b in pairs]
    for i, (x, y) in enumerate(arrays):
        if x.size < 2 or y.size < 2:
            continue
        if np.all(x == x[0]) and np.all(y == x[0]):
            out[i] = 1.0
            continue
        batches.setdefault((x.size, y.size, _mwu_method(x, y)), []).append(i)
    for (_, _, method), idx in batches.items():
        xs = np.stack([arrays[i][0] for i in idx])
        ys = np.stack([arrays[i][1] for i in idx])
        how: object = (sps.PermutationMethod(n_resamples=EXACT_PERMUTATIONS, rng=_rng(seed))
                       if method == "permutation" else method)
        ps = np.atleast_1d(sps.mannwhitneyu(xs, ys, alternative="two-sided", method=how, axis=1).pvalue)
        for i, p in zip(idx, ps):
            out[i] = float(p)
    return out


def mann_whitney_p(a: Sequence[float], b: Sequence[float], *, seed: int = SEED) -> float | None:
    """Two-sided Mann-Whitney U p-value of one pair (see mann_whitney_many)."""
    return mann_whitney_many([(a, b)], seed=seed)[0]


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment (controls the family-wise error rate)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjustment (controls the false-discovery rate across many metrics)."""
    if not pvalues:
        return []
    return [float(p) for p in sps.false_discovery_control(np.asarray(pvalues, dtype=float), method="bh")]


def _robust_sd(x: np.ndarray) -> float:
    """MAD scaled to a normal SD, falling back to the SD when more than half the values coincide."""
    mad = float(sps.median_abs_deviation(x, scale="normal")) if x.size > 1 else 0.0
    if mad == 0 and x.size > 1:
        return float(np.std(x, ddof=1))
    return mad


def min_n_for_exact_test(alpha: float) -> int:
    """Smallest n per side at which the Mann-Whitney test can reach p < alpha at all (2 / C(2n, n))."""
    n = 2
    while 2 / math.comb(2 * n, n) >= alpha:
        n += 1
    return n


@functools.lru_cache(maxsize=64)
def _z(alpha: float, power: float) -> float:
    return float(sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power))


MWU_EFFICIENCY = 3 / math.pi  # asymptotic relative efficiency of Mann-Whitney to the t-test under normality


def repetitions_needed(a: Sequence[float], b: Sequence[float], *, alpha: float = ALPHA,
                       power: float = 0.8) -> int | None:
    """Repetitions per side at which a difference of the observed size, at the observed spread,
    would be detected by the Mann-Whitney test with the given power at level alpha.

    Normal approximation on the log scale (on the raw scale when a value is not positive),
    divided by Mann-Whitney's efficiency, and never below the n at which the exact test can reach
    alpha. None when the medians are equal (there is no difference to resolve)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size < 2 or y.size < 2:
        return None
    if np.all(x > 0) and np.all(y > 0):
        x, y = np.log(x), np.log(y)
    d = abs(float(np.median(x) - np.median(y)))
    if d == 0:
        return None
    s = math.sqrt((_robust_sd(x) ** 2 + _robust_sd(y) ** 2) / 2)
    z = _z(alpha, power)
    n = 2 * (z * s / d) ** 2 / MWU_EFFICIENCY
    return max(math.ceil(n), min_n_for_exact_test(alpha))


# --- ranking the platforms of one group ------------------------------------------------------
@dataclass
class PairTest:
    """Platform a against platform b on one metric: the test that decided, and the effect."""

    a: str
    b: str
    test: str
    p: float | None
    p_adjusted: float | None
    correction: str
    ratio: RatioCI | None  # median(a) / median(b)
    significant: bool
    repetitions_needed: int | None  # when not significant: per platform, at the corrected level

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ratio"] = self.ratio._asdict() if self.ratio else None
        return d


@dataclass
class Ranking:
    """Platforms of one group ordered by median (ascending), with every pair tested."""

    direction: Direction
    order: list[str]  # ascending median
    medians: dict[str, float]
    pairs: list[PairTest]
    alpha: float = ALPHA

    def pair(self, a: str, b: str) -> PairTest | None:
        for t in self.pairs:
            if {t.a, t.b} == {a, b}:
                return t
        return None

    def adjacent(self) -> list[PairTest]:
        return [t for a, b in zip(self.order, self.order[1:]) if (t := self.pair(a, b)) is not None]

    @property
    def complete(self) -> bool:
        """Every neighbour in the order is separated by the test."""
        return all(t.significant for t in self.adjacent())

    def as_dict(self) -> dict:
        return {"direction": self.direction, "order": self.order, "medians": self.medians,
                "alpha": self.alpha, "complete": self.complete, "pairs": [t.as_dict() for t in self.pairs]}


def rank(values: dict[str, Sequence[float]], dir_: Direction, *, alpha: float = ALPHA) -> Ranking | None:
    """Test every pair of platforms (Mann-Whitney U, Holm over the pairs); None with fewer than two
    platforms with values."""
    measured = {p: v for p, v in values.items() if len(v) > 0}
    if len(measured) < 2:
        return None
    medians = {p: float(np.median(np.asarray(v, dtype=float))) for p, v in measured.items()}
    order = sorted(medians, key=lambda p: medians[p])
    names = list(measured)
    pairs_ab = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    ps = mann_whitney_many([(measured[a], measured[b]) for a, b in pairs_ab])
    tested = [p for p in ps if p is not None]
    adjusted = iter(holm(tested))
    m = len(tested)
    correction = f"Holm over {m} pair{'s' if m != 1 else ''}"
    pairs = []
    for (a, b), p in zip(pairs_ab, ps):
        p_adj = next(adjusted) if p is not None else None
        significant = p_adj is not None and p_adj < alpha
        pairs.append(PairTest(a, b, MWU_TEST, p, p_adj, correction, ratio_ci(measured[a], measured[b]), significant,
                              None if significant else repetitions_needed(measured[a], measured[b],
                                                                          alpha=alpha / max(m, 1))))
    return Ranking(dir_, order, medians, pairs, alpha)
