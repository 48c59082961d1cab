"""Summary statistics that are honest about spread: median, p95, mean, sd, 95% CI, CV."""

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
