"""How numbers are written in tables, notes and the report: a few significant digits, thousands
separated, never cut."""

from __future__ import annotations


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}" if a >= 0.001 or a == 0 else f"{v:.2e}"


def fmt_pct(v: float | None) -> str:
    return "-" if v is None else f"{v:+.1f}%"


def fmt_p(p: float | None, digits: int = 3) -> str:
    """A p-value: fixed decimals down to 0.001, then scientific."""
    if p is None:
        return "-"
    return f"{p:.{digits}f}" if p >= 0.001 else f"{p:.1e}"
