"""Units of measured and published numbers: which dimension each measures, and conversions.

Shared by the suite's published numbers (config/papers.py refuses a unit not listed here) and the
claim verdicts (results/claims.py puts a published number beside ours in the same unit).
"""

from __future__ import annotations

# unit -> (dimension, factor to the dimension's base unit)
UNITS: dict[str, tuple[str, float]] = {
    "ns": ("time", 1e-9), "us": ("time", 1e-6), "µs": ("time", 1e-6), "ms": ("time", 1e-3), "s": ("time", 1.0),
    "req/s": ("rate", 1.0), "ops/s": ("rate", 1.0), "trans/s": ("rate", 1.0),
    "Kreq/s": ("rate", 1e3), "Kops/s": ("rate", 1e3), "Mops/s": ("rate", 1e6),
    "Mbit/s": ("bandwidth", 1e6), "Gbit/s": ("bandwidth", 1e9), "MiB/s": ("bandwidth", 8 * (1 << 20)),
    "MB/s": ("bandwidth", 8e6), "KiB/s": ("bandwidth", 8 * 1024),
    "x": ("ratio", 1.0), "%": ("percent", 1.0), "count": ("count", 1.0),
}


def convert(value: float, unit: str, to: str) -> float | None:
    """`value` in `unit` expressed in `to`, or None when the two measure different things."""
    a, b = UNITS.get(unit), UNITS.get(to)
    if a is None or b is None or a[0] != b[0]:
        return None
    return value * a[1] / b[1]
