"""The paper section's figures: each claim in the shape of its figure, and published ratios beside ours.

A claim over a numeric sweep (connections, file sizes) is drawn as the paper draws it, a line per
platform along the sweep; a claim at one point (or a few) as bars per platform. The published
numbers are drawn as ratios to the paper's baseline next to ours to our platform standing for it,
because the hardware differs and only ratios can be compared.
"""

from __future__ import annotations

from dataclasses import replace

import matplotlib

from .claims import PublishedRow, Verdict, matching_groups
from .flags import sweep_lines
from .plots import (
    RC,
    Plot,
    _figure,
    _slug,
    bar_figure,
    colour_map,
    legend_above,
    numeric_sweep_key,
    sweep_figure,
    to_svg,
)
from .summary import Group


def _renamed(plot: Plot, new_id: str, title: str, caption: str) -> Plot:
    """The same figure under another id (its SVG element ids are prefixed with the figure's id)."""
    svg = plot.svg.replace(f'id="{plot.id}-', f'id="{new_id}-').replace(f"#{plot.id}-", f"#{new_id}-")
    return Plot(new_id, title, caption, svg)


def claim_figures(verdict: Verdict, claim, groups: list[Group], labels: dict[str, str], run_id: str) -> list[Plot]:
    """The claim's platforms at the points it covers (none when nothing was measured)."""
    matched = matching_groups(groups, claim.metric, claim.workload, claim.benchmark, claim.point)
    if getattr(claim, "baseline_point", None):  # the two points side by side
        matched += [g for g in matching_groups(groups, claim.metric, claim.workload, claim.benchmark,
                                               {**claim.point, **claim.baseline_point}) if g not in matched]
    platforms = list(dict.fromkeys(p for p in claim.platforms if any(g.values(p) for g in matched)))
    # only the claim's platforms: the axis (linear or log) follows what is drawn
    matched = [replace(g, per_platform={p: s for p, s in g.per_platform.items() if p in platforms})
               for g in matched if any(g.values(p) for p in platforms)]
    if not matched:
        return []
    key = numeric_sweep_key(matched)
    plots = [sweep_figure(line, key, platforms, labels) for line in sweep_lines(matched, key)] if key else \
        [bar_figure(matched, platforms, labels)]
    out = []
    for i, plot in enumerate(plots):
        fid = _slug("claim", run_id, verdict.id, str(i))
        title = f"Claim {verdict.id} ({verdict.verdict}): {plot.title}"
        out.append(_renamed(plot, fid, title, f"{verdict.statement}. {plot.caption}"))
    return out


def published_figure(rows: list[PublishedRow], baseline: str, ours_baseline: str | None, run_id: str) -> Plot | None:
    """Grouped bars: per system of the paper, its ratio to the paper's baseline and ours to our baseline."""
    shown = [r for r in rows if r.published_ratio is not None]
    if len(shown) < 2:
        return None
    colours = colour_map(["published", "ours"])
    with matplotlib.rc_context(RC):
        fig = _figure(max(4.0, 1.5 + 0.9 * len(shown)), 3.0)
        ax = fig.add_subplot()
        xs = list(range(len(shown)))
        ax.bar([x - 0.2 for x in xs], [r.published_ratio or 0.0 for r in shown], 0.38, color=colours["published"],
               label=f"published, ratio to {baseline}")
        ours = [(x, r.ours_ratio) for x, r in zip(xs, shown, strict=True) if r.ours_ratio is not None]
        if ours:
            ax.bar([x + 0.2 for x, _ in ours], [v or 0.0 for _, v in ours], 0.38, color=colours["ours"],
                   label=f"ours, ratio to {ours_baseline or 'our baseline'}")
        ax.axhline(1.0, color="#777", linewidth=0.8)
        ax.set_xticks(xs, [r.system + (f"\n({r.ours_platform})" if r.ours_platform else "") for r in shown])
        ax.set_ylabel("ratio to the baseline")
        legend_above(ax, 2)
    fid = _slug("published", run_id)
    return Plot(fid, f"Published beside measured, as ratios to {baseline}",
                "The paper's numbers divided by its baseline's, and ours by the platform standing for that "
                "baseline here: absolute values are not comparable across hardware, ratios are.", to_svg(fig, fid))
