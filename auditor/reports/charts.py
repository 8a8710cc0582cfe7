"""The report's charts: inline SVG, drawn without scripts or external assets."""

from __future__ import annotations

import math

import numpy as np

from auditor.reports.format import escape, number
from auditor.reports.schema import Distribution


def svg_histogram(dist: Distribution) -> str:
    """An inline SVG bar chart of a distribution with its flag threshold as a dashed line."""
    w, h, left, right, top, bottom = 330, 200, 40, 18, 22, 34
    pw, ph = w - left - right, h - top - bottom
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="hist" data-metric="{escape(dist.metric)}" '
             f'width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
             f'aria-label="{escape(dist.title)} histogram of {dist.count} audits">']
    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafbfc" stroke="#d9dee7"/>')
    if not dist.bins or dist.count == 0:
        parts.append(f'<text x="{left + pw / 2}" y="{top + ph / 2}" text-anchor="middle" fill="#5b6475" '
                     f'font-size="13">no data in this period</text></svg>')
        return "".join(parts)
    lo, hi = dist.bins[0].lo, dist.bins[-1].hi
    peak = max(b.count for b in dist.bins) or 1

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * pw

    for step in (0.25, 0.5, 0.75, 1.0):  # horizontal grid
        y = top + ph - step * ph
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eceff4"/>')
    for b in dist.bins:
        if b.count == 0:
            continue
        bh = b.count / peak * ph
        parts.append(f'<rect class="bin" x="{x(b.lo) + 0.5:.1f}" y="{top + ph - bh:.1f}" '
                     f'width="{max(x(b.hi) - x(b.lo) - 1, 1):.1f}" height="{bh:.1f}" fill="#4f7cc9">'
                     f'<title>{number(b.lo, 2)}–{number(b.hi, 2)}: {b.count}</title></rect>')
    if dist.threshold is not None and lo <= dist.threshold <= hi:
        tx = x(dist.threshold)
        parts.append(f'<line class="threshold" x1="{tx:.1f}" x2="{tx:.1f}" y1="{top}" y2="{top + ph}" '
                     f'stroke="#b42318" stroke-width="2" stroke-dasharray="5 3"/>')
        anchor = "end" if tx > left + pw * 0.7 else ("start" if tx < left + pw * 0.3 else "middle")
        parts.append(f'<text x="{tx:.1f}" y="{top - 6}" text-anchor="{anchor}" font-size="11" '
                     f'fill="#b42318">flag ≥ {number(dist.threshold, 2)}</text>')
    # axes labels
    integer = dist.metric == "sparsity"
    ticks = np.arange(lo, hi + 1e-9, max(1, math.ceil((hi - lo) / 5))) if integer else np.linspace(lo, hi, 5)
    width = dist.bins[0].hi - dist.bins[0].lo
    centre = width / 2 if integer and width == 1 else 0.0  # one integer per bar: label the bar's middle
    for v in ticks:
        if centre and v >= hi:
            continue
        label = f"{v:.0f}" if integer else f"{v:.2f}"
        parts.append(f'<text x="{x(float(v) + centre):.1f}" y="{top + ph + 14}" text-anchor="middle" font-size="10.5" '
                     f'fill="#5b6475">{label}</text>')
    parts.append(f'<text x="{left - 5}" y="{top + 9}" text-anchor="end" font-size="10.5" fill="#5b6475">{peak}</text>')
    parts.append(f'<text x="{left - 5}" y="{top + ph}" text-anchor="end" font-size="10.5" fill="#5b6475">0</text>')
    parts.append(f'<text x="{left + pw / 2}" y="{h - 4}" text-anchor="middle" font-size="11" fill="#1d2330">'
                 f'{escape(dist.title.lower())}</text>')
    parts.append("</svg>")
    return "".join(parts)
