"""Summary statistics that are honest about spread: median, p95, mean, sd, 95% CI (Student's t), CV,
and the comparisons between platforms that must not be over-read: overlapping intervals, a wide
spread, and throughput "too good to be true" against native on the same host and run."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

# Two-sided 97.5% quantiles of Student's t for df 1..30; beyond that the normal 1.96 is close enough.
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042]
WIDE_CV = 0.10  # coefficient of variation above which platform comparisons are flagged


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), as numpy's default."""
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    k = (len(s) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def t975(df: int) -> float:
    return T975[df - 1] if df <= len(T975) else 1.96


@dataclass
class Summary:
    n: int
    failed: int
    median: float | None = None
    p95: float | None = None
    mean: float | None = None
    sd: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    cv: float | None = None

    @property
    def wide(self) -> bool:
        return self.cv is not None and self.cv > WIDE_CV

    def as_dict(self) -> dict:
        return {**self.__dict__, "wide": self.wide}


def summarize(values: list[float], failed: int = 0) -> Summary:
    n = len(values)
    if n == 0:
        return Summary(0, failed)
    mean = statistics.fmean(values)
    s = Summary(n, failed, statistics.median(values), percentile(values, 95), mean)
    if n >= 2:
        sd = statistics.stdev(values)
        half = t975(n - 1) * sd / math.sqrt(n)
        s.sd, s.ci_low, s.ci_high = sd, mean - half, mean + half
        s.cv = sd / abs(mean) if mean else None
    return s


# --- comparing platforms -----------------------------------------------------------------
TOO_GOOD_RATIO = 1.5  # throughput this far beyond native on the same host and run is flagged, not celebrated
HIGHER_IS_BETTER_UNITS = {"req/s", "trans/s", "ops/s", "Mbit/s", "MiB/s", "Gbit/s"}
LOWER_IS_BETTER_UNITS = {"ms", "us", "ns", "s"}


def direction(unit: str) -> str | None:
    """'higher' or 'lower' (is better) for a unit, None when neither applies (counts)."""
    if unit in HIGHER_IS_BETTER_UNITS:
        return "higher"
    if unit in LOWER_IS_BETTER_UNITS:
        return "lower"
    return None


def intervals_overlap(a: Summary, b: Summary) -> bool | None:
    """True when the two 95% CIs overlap (the difference is not established), None without CIs."""
    if a.ci_low is None or b.ci_low is None:
        return None
    return a.ci_low <= b.ci_high and b.ci_low <= a.ci_high


def too_good(s: Summary, native: Summary, unit: str, ratio: float = TOO_GOOD_RATIO) -> float | None:
    """The ratio to native when a throughput median exceeds native's by more than `ratio`, else None."""
    if direction(unit) != "higher" or s.median is None or not native.median or native.median <= 0:
        return None
    r = s.median / native.median
    return r if r > ratio else None


def bootstrap_ci(values: list[float], *, resamples: int = 2000, seed: int = 1) -> tuple[float, float] | None:
    """Percentile bootstrap 95% CI of the median (no normality assumed); None for fewer than 3 values."""
    import random

    if len(values) < 3:
        return None
    rng = random.Random(seed)
    n = len(values)
    medians = sorted(statistics.median(rng.choices(values, k=n)) for _ in range(resamples))
    return percentile(medians, 2.5), percentile(medians, 97.5)
