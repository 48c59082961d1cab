"""Terminal tables (rich): a run's summary, every metric of a run, a comparison of two runs, the run list.

Numbers are never cut to fit the width: a number column is at least as wide as its longest
token (a value, an interval, `n=5`), labels wrap instead, platforms that do not fit go to a
further table, and `wide=True` prints everything on one line per row whatever the terminal.
"""

from __future__ import annotations

import time
from typing import Any, Iterable

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .compare import Comparison
from .flags import RANKING_LEGEND
from .numbers import fmt, fmt_p, fmt_pct
from .stats import Summary
from .store import Store
from .summary import Group, is_headline, platform_labels, summarize_rows

LABEL_MIN = 22  # the label column wraps down to this


def interval(s: Summary) -> str:
    return f"[{fmt(s.ci_low)}–{fmt(s.ci_high)}]" if s.has_interval else (s.ci_reason or "-")


def plain(cell: str) -> str:
    from rich.text import Text

    return Text.from_markup(cell).plain


def longest_token(cells: Iterable[str]) -> int:
    return max((len(tok) for c in cells for tok in plain(c).split()), default=1)


def longest_line(cells: Iterable[str]) -> int:
    return max((len(line) for c in cells for line in plain(c).splitlines() or [""]), default=1)


CELL_OVERHEAD = 3  # padding 2 + one border


def fit_widths(natural: list[int], minimum: list[int], width: int) -> list[int]:
    """Column widths that fit `width` when they can: start from each column's minimum (a number
    column's minimum is its natural width, so numbers never wrap) and hand out what is left one
    character at a time to the column furthest below its natural width. When even the minimums
    do not fit, the minimums (the caller prints wider)."""
    widths = list(minimum)
    spare = width - 1 - sum(w + CELL_OVERHEAD for w in widths)
    while spare > 0:
        short = [i for i, nat in enumerate(natural) if widths[i] < nat]
        if not short:
            break
        i = min(short, key=lambda j: widths[j] / natural[j])
        widths[i] += 1
        spare -= 1
    return widths


def columns_table(title: str, headers: list[str], rows: list[list[str]], numeric: set[str], *, width: int,
                  wide: bool, caption: str | None = None, minima: dict[str, int] | None = None) -> Table:
    """A table whose numeric columns are never narrower than their content, whose `minima` columns
    are never narrower than their longest token (they wrap between tokens), and whose text columns
    wrap (fold) to fit `width`; `wide` keeps every column at its natural width."""
    keep = [i for i, h in enumerate(headers) if any(plain(r[i]).strip() for r in rows) or not rows]
    headers = [headers[i] for i in keep]  # a column empty in every row is left out
    rows = [[r[i] for i in keep] for r in rows]
    natural = [max(longest_line([r[i] for r in rows] + [h]), 1) for i, h in enumerate(headers)]
    minima = minima or {}
    minimum = [natural[i] if h in numeric else min(natural[i], minima.get(h, max(longest_token([h]), 8)))
               for i, h in enumerate(headers)]
    widths = natural if wide else fit_widths(natural, minimum, width)
    t = Table(title=title, caption=caption, caption_justify="left")
    for h, w in zip(headers, widths):
        t.add_column(h, justify="right" if h in numeric else "left", width=w, no_wrap=wide or h in numeric,
                     overflow="fold")
    for r in rows:
        t.add_row(*r)
    return t


def _print(console: Console, table: Table) -> None:
    """Print at the terminal's width, or wider when the table's columns do not fit (numbers stay
    whole; the terminal wraps the long lines). Rich cannot print wider than its console: use a
    console of the width needed, on the same file."""
    need = console.measure(table, options=console.options.update(max_width=100_000)).maximum
    if need <= console.width:
        console.print(table)
        return
    colour: Any = console.color_system  # the name rich reports is one it accepts back
    wider = Console(file=console.file, width=need, color_system=colour, force_terminal=console.is_terminal,
                    no_color=console.no_color, highlight=False)
    wider.print(table, crop=False)


NO_CI_MARK = {"n too small for an interval": "†", "zero spread (a quantized or discrete output), no interval": "‡"}


def platform_cell(s: Summary | None, failures: list[str] | None = None) -> str:
    if s is None:
        return ""
    if s.n == 0:
        return f"[red]failed ({s.failed})[/red]"
    text = (f"{fmt(s.median)} {interval(s)} n={s.n}" if s.has_interval else
            f"{fmt(s.median)} n={s.n} {NO_CI_MARK.get(s.ci_reason or '', '')}".rstrip())
    if s.failed:
        text += f" [red]+{s.failed} failed[/red]"
    for name in s.flag_names():
        text += f" [yellow]{escape(name)}[/yellow]"
    return text


def _shared(groups: list[Group]) -> tuple[bool, bool]:
    """Whether every group has the same workload / benchmark (then the labels can drop it)."""
    return len({g.workload for g in groups}) == 1, len({g.benchmark for g in groups}) == 1


def group_label(g: Group, drop_workload: bool, drop_benchmark: bool) -> str:
    parts = ([] if drop_workload else [g.workload]) + ([] if drop_benchmark else [g.benchmark])
    parts.append(f"{g.metric} ({g.unit})")
    if g.point:
        parts.append(g.point_label)
    return escape(" ".join(parts))


def summary_tables(groups: list[Group], labels: dict[str, str], title: str, *, width: int,
                   wide: bool = False) -> list[Table]:
    """Rows = metric and point, columns = platforms: median [95% CI of the median] n=, flags.
    Platforms that do not fit beside the labels at their minimum width go to a further table."""
    if not groups:
        return []
    platforms = list(labels)
    drop_w, drop_b = _shared(groups) if not wide else (False, False)
    label_cells = [group_label(g, drop_w, drop_b) for g in groups]
    cells = {p: [platform_cell(g.per_platform.get(p)) for g in groups] for p in platforms}
    minimum = {p: max(longest_token(cells[p] + [labels[p]]), len(labels[p])) for p in platforms}
    label_min = min(longest_line(label_cells), LABEL_MIN)
    chunks: list[list[str]] = [[]]
    used = 1 + label_min + CELL_OVERHEAD
    for p in platforms:
        if chunks[-1] and not wide and used + minimum[p] + CELL_OVERHEAD > width:
            chunks.append([])
            used = 1 + label_min + CELL_OVERHEAD
        chunks[-1].append(p)
        used += minimum[p] + CELL_OVERHEAD
    sub = (f" ({groups[0].workload})" if drop_w else "") + (f" ({groups[0].benchmark})" if drop_b else "")
    marks = {m for p in platforms for c in cells[p] for m in NO_CI_MARK.values() if c.endswith(m) or f" {m} " in c}
    caption = "; ".join(f"{m} {reason}" for reason, m in NO_CI_MARK.items() if m in marks) or None
    tables = []
    for i, chunk in enumerate(chunks):
        heads = ["metric (unit) point", *[escape(labels[p]) for p in chunk]]
        rows = [[label_cells[j], *[cells[p][j] for p in chunk]] for j in range(len(groups))]
        t = columns_table(title + sub + (f" [{i + 1}/{len(chunks)}]" if len(chunks) > 1 else ""), heads, rows,
                          set(), width=width, wide=wide, caption=caption,
                          minima={"metric (unit) point": label_min,
                                  **{escape(labels[p]): minimum[p] for p in chunk}})
        for col in t.columns[1:]:
            col.justify = "right"
        tables.append(t)
    return tables


def flag_lines(groups: list[Group], labels: dict[str, str]) -> list[str]:
    return [f"{g.label} [{labels.get(p, p)}]: {f.name}: {f.detail}"
            for g in groups for p, s in g.per_platform.items() for f in s.flags]


def print_notes(console: Console, notes: list[str], style: str = "yellow", prefix: str = "warning:") -> None:
    for note in notes:
        console.print(f"[{style}]{prefix}[/{style}] {escape(note)}" if prefix else escape(note), highlight=False,
                      soft_wrap=True)


def print_rankings(console: Console, groups: list[Group]) -> None:
    notes = [n for g in groups for n in g.notes]
    if notes:
        console.print(f"[dim]{escape(RANKING_LEGEND)}[/dim]", highlight=False, soft_wrap=True)
        print_notes(console, notes, prefix="")


def print_run_summary(console: Console, store: Store, run_id: str, *, wide: bool = False,
                      headline_only: bool = True) -> list[Group]:
    """The end-of-run table: headline metrics per platform, then rankings and flags."""
    rows = list(store.samples(run_id))
    if not rows:
        return []
    groups = summarize_rows(rows)
    shown = [g for g in groups if is_headline(g.metric)] if headline_only else groups
    labels = platform_labels(rows)
    for t in summary_tables(shown, labels, f"run {run_id}: median [95% CI of the median] n", width=console.width,
                            wide=wide):
        _print(console, t)
    print_rankings(console, shown)
    print_notes(console, flag_lines(shown, labels), prefix="flag:")
    return groups


RESULT_COLUMNS = ["workload / benchmark", "metric (unit)", "point", "platform", "n", "median", "95% CI of median",
                  "p95 / max", "CV", "failed", "flags"]
NUMERIC = {"n", "median", "95% CI of median", "p95 / max", "CV", "failed"}


def results_table(groups: list[Group], labels: dict[str, str], title: str, *, width: int,
                  wide: bool = False) -> Table:
    """Every metric of a run, one row per platform."""
    rows = []
    for g in groups:
        for p, s in g.per_platform.items():
            tail_name, tail = s.tail()
            rows.append([escape(f"{g.workload} / {g.benchmark}"), escape(f"{g.metric} ({g.unit})"),
                         escape(g.point_label), escape(labels.get(p, p)), str(s.n), fmt(s.median), interval(s),
                         f"{tail_name} {fmt(tail)}" if s.n else "-", f"{s.cv * 100:.1f}%" if s.cv is not None else "-",
                         str(s.failed) if s.failed else "", ", ".join(s.flag_names())])
    return columns_table(title, RESULT_COLUMNS, rows, NUMERIC - {"95% CI of median"}, width=width, wide=wide,
                         minima={"95% CI of median": longest_token([r[6] for r in rows if r[6].startswith("[")])})


def print_results(console: Console, store: Store, run_id: str, *, wide: bool = False) -> None:
    info = store.run_info(run_id) or {}
    rows = list(store.samples(run_id))
    groups = summarize_rows(rows)
    labels = platform_labels(rows)
    title = f"run {run_id} ({info.get('suite')}, {info.get('status')}, testbed {info.get('testbed_rev')})"
    _print(console, results_table(groups, labels, title, width=console.width, wide=wide))
    print_rankings(console, groups)
    print_notes(console, flag_lines(groups, labels), prefix="flag:")
    if info.get("status") != "ok" and info.get("reason"):
        console.print(f"[yellow]run status {info['status']}:[/yellow] {escape(info['reason'])}", soft_wrap=True)


# --- runs --------------------------------------------------------------------------------
def run_host(info: dict) -> str:
    prov = info.get("provenance") or {}
    server = prov.get("server") if isinstance(prov, dict) else None
    if isinstance(server, dict):
        return str(server.get("hostname") or server.get("host") or "?")
    return "?"


def duration(started: float | None, finished: float | None) -> str:
    if started is None or finished is None:
        return "-"
    s = round(finished - started)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")


def run_records(store: Store) -> list[dict]:
    """Every run with date, duration, status, host and sample count."""
    out = []
    for r in store.runs():
        info = store.run_info(r["run_id"]) or {}
        out.append({**r, "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(r["started"])),
                    "duration": duration(r["started"], r["finished"]), "host": run_host(info)})
    return out


RUN_COLUMNS = ["run", "suite", "date", "duration", "status", "host", "samples", "testbed rev", "reason"]


def runs_table(store: Store, *, width: int, wide: bool = False) -> Table:
    rows = [[r["run_id"], escape(r["suite"]), r["date"], r["duration"], r["status"], escape(r["host"]),
             str(r["samples"]), r["testbed_rev"], escape(r["reason"] or "")] for r in run_records(store)]
    return columns_table(f"runs in {store.path}", RUN_COLUMNS, rows, {"duration", "samples"}, width=width,
                         wide=wide, minima={"run": longest_token([r[0] for r in rows]), "date": 16})


def print_runs(console: Console, store: Store, *, wide: bool = False) -> None:
    _print(console, runs_table(store, width=console.width, wide=wide))


# --- compare -----------------------------------------------------------------------------
COMPARE_COLUMNS = ["metric (unit)", "point", "platform", "A median", "B median", "change", "95% CI",
                   "p (MWU)", "p adj (BH)", "verdict"]
VERDICT_STYLE = {"faster": "green", "slower": "red", "higher": "magenta", "lower": "magenta",
                 "not comparable": "dim"}


def compare_table(cmp: Comparison, *, width: int, wide: bool = False) -> Table:
    drop_w = len({r.workload for r in cmp.rows}) == 1 and not wide
    drop_b = len({r.benchmark for r in cmp.rows}) == 1 and not wide
    cells = []
    for r in cmp.rows:
        label = " ".join(([] if drop_w else [r.workload]) + ([] if drop_b else [r.benchmark])
                         + [f"{r.metric} ({r.unit})"])
        ci = f"[{fmt_pct(r.ci_low_pct)}, {fmt_pct(r.ci_high_pct)}]" if r.ci_low_pct is not None else (r.why or "-")
        style = VERDICT_STYLE.get(r.verdict)
        verdict = f"[{style}]{r.verdict}[/{style}]" if style else r.verdict
        cells.append([escape(label), escape(r.point), escape(r.platform), f"{fmt(r.median_a)} n={r.n_a}",
                      f"{fmt(r.median_b)} n={r.n_b}", fmt_pct(r.change_pct), escape(ci), fmt_p(r.p),
                      fmt_p(r.p_adjusted), verdict])
    sub = " ".join(([cmp.rows[0].workload] if drop_w and cmp.rows else []) +
                   ([cmp.rows[0].benchmark] if drop_b and cmp.rows else []))
    title = f"run {cmp.run_b} (B) against run {cmp.run_a} (A)" + (f": {sub}" if sub else "")
    return columns_table(title, COMPARE_COLUMNS, cells, {"A median", "B median", "change", "p (MWU)", "p adj (BH)"},
                         width=width, wide=wide,
                         minima={"95% CI": longest_token([c[6] for c in cells if c[6].startswith("[")] or ["-"]) * 2 + 1,
                                 "verdict": longest_token([c[9] for c in cells])})


def print_comparison(console: Console, cmp: Comparison, *, wide: bool = False) -> None:
    console.print(f"[bold]provenance differences[/bold] (A = {cmp.run_a}, suite {escape(cmp.suite_a)}; "
                  f"B = {cmp.run_b}, suite {escape(cmp.suite_b)}):", highlight=False, soft_wrap=True)
    if not cmp.provenance_diffs:
        console.print("  none", highlight=False)
    for what, a, b in cmp.provenance_diffs:
        console.print(f"  {escape(what)}: {escape(a)} -> {escape(b)}", highlight=False, soft_wrap=True)
    print_notes(console, cmp.notes)
    _print(console, compare_table(cmp, width=console.width, wide=wide))
    counts = ", ".join(f"{v} {k}" for k, v in sorted(cmp.counts().items()))
    console.print(f"verdicts: {counts}. Decided by {cmp.test}, p adjusted with {cmp.correction}, alpha {cmp.alpha:g}; "
                  f"change = B median / A median - 1 with a percentile-bootstrap 95% CI (log scale).",
                  highlight=False, soft_wrap=True)

