"""`testbed claims RUN` in the terminal: the verdict table, then the published numbers beside ours."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

from .claims import NOT_COMPARABLE, NOT_REPRODUCED, REPRODUCED, PublishedRow, Verdict, verdict_counts
from .numbers import fmt
from .table import _print, columns_table

VERDICT_STYLE = {REPRODUCED: "green", NOT_REPRODUCED: "red", NOT_COMPARABLE: "dim"}


def verdict_rows(verdicts: list[Verdict]) -> list[list[str]]:
    out = []
    for v in verdicts:
        style = VERDICT_STYLE.get(v.verdict, "yellow")
        label = v.verdict + (f" (~{v.repetitions} reps)" if v.repetitions else "")
        out.append([escape(v.id), f"[{style}]{label}[/{style}]", escape(v.statement), escape(v.detail)])
    return out


def published_table_rows(rows: list[PublishedRow]) -> list[list[str]]:
    out = []
    for r in rows:
        ours = f"{fmt(r.ours)} {r.ours_unit} ({r.ours_platform}, n={r.ours_n})" if r.ours is not None else r.note
        out.append([escape(r.system + (f": {r.what}" if r.what else "")),
                    f"{'~' if r.approx else ''}{fmt(r.published)} {r.unit}",
                    f"{fmt(r.published_ratio)}x" if r.published_ratio is not None else "", escape(ours),
                    f"{fmt(r.ours_ratio)}x" if r.ours_ratio is not None else ""])
    return out


def print_claims(console: Console, run_id: str, paper: Any, verdicts: list[Verdict],
                 published: list[PublishedRow]) -> None:
    title = f"claims of run {run_id}" + (f": {paper.paper.citation()}" if paper.paper else "")
    _print(console, columns_table(title, ["claim", "verdict", "statement", "numbers"], verdict_rows(verdicts),
                                  set(), width=console.width, wide=False, minima={"verdict": 14, "claim": 12}))
    counts = verdict_counts(verdicts)
    console.print(", ".join(f"{n} {k}" for k, n in counts.items()), highlight=False, soft_wrap=True)
    judged = [v for v in verdicts if v.verdict != NOT_COMPARABLE]
    for test in dict.fromkeys(v.test for v in judged):
        kinds = "/".join(dict.fromkeys(v.kind for v in judged if v.test == test))
        console.print(f"{kinds}: {test}", highlight=False, soft_wrap=True, markup=False)
    if published:
        p = paper.published
        caption = f"paper: {p.hardware}" + (f", {p.nic}" if p.nic else "") + f"; source: {p.source}"
        _print(console, columns_table("published beside measured", ["paper's system", "published",
                                                                    f"ratio to {p.baseline or '-'}", "ours",
                                                                    "our ratio"],
                                      published_table_rows(published), {"published"}, width=console.width,
                                      wide=False, caption=caption))
