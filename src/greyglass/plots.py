"""Plots as self-contained SVG strings: no matplotlib, no fonts or scripts fetched from anywhere.

Four charts cover what greyglass reports: a line chart (several series, each with an optional
confidence band), a histogram, a heatmap with row/column labels and the value in each cell,
and a bar chart with error bars. Each returns an SVG document as a `str`; write it with
`save_svg(path, svg)` (atomic) into a run folder. Axes are linear; labels are escaped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import NamedTuple

from .atomic import write_text

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
WIDTH, HEIGHT = 640, 400
LEFT, RIGHT, TOP, BOTTOM = 70, 150, 40, 60  # margins; the right one holds the legend


class Series(NamedTuple):
    """One line: x and y values, and optionally the lower/upper edge of a band around it."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    lo: Sequence[float] | None = None
    hi: Sequence[float] | None = None


def line_chart(series: Sequence[Series], title: str, x_label: str, y_label: str,
               y_range: tuple[float, float] | None = None) -> str:
    """Lines with markers; a shaded band between `lo` and `hi` where a series has them."""
    xs = [v for s in series for v in s.x]
    ys = [v for s in series for v in [*s.y, *(s.lo or []), *(s.hi or [])] if math.isfinite(v)]
    frame = _Frame(_span(xs), y_range or _span(ys, pad=0.05))
    parts = frame.axes(title, x_label, y_label)
    for i, s in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        if s.lo is not None and s.hi is not None:
            upper = [frame.point(x, y) for x, y in zip(s.x, s.hi)]
            lower = [frame.point(x, y) for x, y in reversed(list(zip(s.x, s.lo)))]
            parts.append(f'<polygon points="{_points(upper + lower)}" fill="{color}" fill-opacity="0.18" stroke="none"/>')
        pts = [frame.point(x, y) for x, y in zip(s.x, s.y) if math.isfinite(y)]
        parts.append(f'<polyline points="{_points(pts)}" fill="none" stroke="{color}" stroke-width="2"/>')
        parts += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{color}"/>' for px, py in pts]
        parts.append(frame.legend_entry(i, s.label, color))
    return _document(parts)


def histogram(values: Sequence[float], title: str, x_label: str, bins: int = 30,
              y_label: str = "count") -> str:
    """Counts of `values` in `bins` equal-width bins."""
    return histograms({"": values}, title, x_label, bins, y_label)


def histograms(groups: Mapping[str, Sequence[float]], title: str, x_label: str, bins: int = 30,
               y_label: str = "count") -> str:
    """Several distributions over the same bins, overlaid (translucent), one legend entry each."""
    finite = {name: [v for v in vals if math.isfinite(v)] for name, vals in groups.items()}
    lo, hi = _span([v for vals in finite.values() for v in vals])
    width = (hi - lo) / bins
    counts = {}
    for name, vals in finite.items():
        counts[name] = [0] * bins
        for v in vals:
            counts[name][min(int((v - lo) / width), bins - 1)] += 1
    top = max((c for cs in counts.values() for c in cs), default=0)
    frame = _Frame((lo, hi), (0.0, top * 1.05 or 1.0))
    parts = frame.axes(title, x_label, y_label)
    opacity = 1.0 if len(counts) == 1 else 0.55
    for g, (name, cs) in enumerate(counts.items()):
        color = PALETTE[g % len(PALETTE)]
        for i, c in enumerate(cs):
            x0, y0 = frame.point(lo + i * width, c)
            x1, y1 = frame.point(lo + (i + 1) * width, 0)
            parts.append(f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{max(x1 - x0 - 1, 0.5):.1f}" '
                         f'height="{y1 - y0:.1f}" fill="{color}" fill-opacity="{opacity}"/>')
        if name:
            parts.append(frame.legend_entry(g, name, color))
    return _document(parts)


def bar_chart(labels: Sequence[str], values: Sequence[float], title: str, y_label: str,
              errors: Sequence[tuple[float, float]] | None = None) -> str:
    """One bar per label; `errors` gives each bar's (low, high) whisker ends."""
    ends = [v for pair in (errors or []) for v in pair]
    frame = _Frame((-0.5, len(labels) - 0.5), _span([0.0, *values, *ends], pad=0.05))
    parts = frame.axes(title, "", y_label, x_ticks=False)
    for i, (label, v) in enumerate(zip(labels, values)):
        x0, top = frame.point(i - 0.35, max(v, 0))
        x1, bottom = frame.point(i + 0.35, min(v, 0))
        parts.append(f'<rect x="{x0:.1f}" y="{top:.1f}" width="{x1 - x0:.1f}" height="{bottom - top:.1f}" '
                     f'fill="{PALETTE[0]}"/>')
        cx, base = frame.point(i, frame.y[0])
        parts.append(f'<text x="{cx:.1f}" y="{base + 16:.1f}" text-anchor="middle" font-size="11">{escape(label)}</text>')
        if errors is not None:
            _, ylo = frame.point(i, errors[i][0])
            _, yhi = frame.point(i, errors[i][1])
            parts.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{ylo:.1f}" y2="{yhi:.1f}" stroke="black"/>')
            parts += [f'<line x1="{cx - 5:.1f}" x2="{cx + 5:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="black"/>'
                      for y in (ylo, yhi)]
    return _document(parts)


def heatmap(matrix: Sequence[Sequence[float]], row_labels: Sequence[str], col_labels: Sequence[str],
            title: str, x_label: str = "", y_label: str = "", value_format: str = "{:.2f}",
            v_range: tuple[float, float] | None = None) -> str:
    """A grid of cells coloured white (low) to blue (high), each showing its value."""
    values = [v for row in matrix for v in row if math.isfinite(v)]
    vmin, vmax = v_range or _span(values)
    n_rows, n_cols = len(row_labels), len(col_labels)
    left, top = 150, 60
    cell = min(60, (WIDTH - left - 20) / max(n_cols, 1))
    width, height = left + n_cols * cell + 20, top + n_rows * cell + 50
    parts = [f'<text x="{width / 2:.0f}" y="24" text-anchor="middle" font-size="15">{escape(title)}</text>']
    for r, row in enumerate(matrix):
        for c, v in enumerate(row):
            t = 0.0 if not math.isfinite(v) else (v - vmin) / ((vmax - vmin) or 1.0)
            x, y = left + c * cell, top + r * cell
            fill = _blend(min(max(t, 0.0), 1.0))
            ink = "white" if t > 0.6 else "black"
            text = value_format.format(v) if math.isfinite(v) else "–"
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{cell:.1f}" height="{cell:.1f}" fill="{fill}" stroke="white"/>')
            parts.append(f'<text x="{x + cell / 2:.1f}" y="{y + cell / 2 + 4:.1f}" text-anchor="middle" '
                         f'font-size="11" fill="{ink}">{escape(text)}</text>')
    for r, label in enumerate(row_labels):
        parts.append(f'<text x="{left - 6}" y="{top + (r + 0.5) * cell + 4:.1f}" text-anchor="end" '
                     f'font-size="11">{escape(label)}</text>')
    for c, label in enumerate(col_labels):
        parts.append(f'<text x="{left + (c + 0.5) * cell:.1f}" y="{top - 6}" text-anchor="middle" '
                     f'font-size="11">{escape(label)}</text>')
    parts.append(f'<text x="{left + n_cols * cell / 2:.1f}" y="{height - 15:.0f}" text-anchor="middle" '
                 f'font-size="12">{escape(x_label)}</text>')
    parts.append(f'<text x="14" y="{top + n_rows * cell / 2:.1f}" font-size="12" '
                 f'transform="rotate(-90 14 {top + n_rows * cell / 2:.1f})" text-anchor="middle">{escape(y_label)}</text>')
    return _document(parts, width, height)


def save_svg(path: str | Path, svg: str) -> Path:
    """Write an SVG string to `path` atomically."""
    write_text(path, svg)
    return Path(path)


class _Frame:
    """Maps data coordinates to pixels inside the plot area and draws the axes."""

    def __init__(self, x: tuple[float, float], y: tuple[float, float]):
        self.x, self.y = x, y
        self.w, self.h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def point(self, x: float, y: float) -> tuple[float, float]:
        fx = (x - self.x[0]) / ((self.x[1] - self.x[0]) or 1.0)
        fy = (y - self.y[0]) / ((self.y[1] - self.y[0]) or 1.0)
        return LEFT + fx * self.w, TOP + (1 - fy) * self.h

    def axes(self, title: str, x_label: str, y_label: str, x_ticks: bool = True) -> list[str]:
        bottom, right = TOP + self.h, LEFT + self.w
        parts = [
            f'<text x="{LEFT + self.w / 2:.0f}" y="24" text-anchor="middle" font-size="15">{escape(title)}</text>',
            f'<text x="{LEFT + self.w / 2:.0f}" y="{HEIGHT - 15}" text-anchor="middle" font-size="12">{escape(x_label)}</text>',
            f'<text x="16" y="{TOP + self.h / 2:.0f}" font-size="12" text-anchor="middle" '
            f'transform="rotate(-90 16 {TOP + self.h / 2:.0f})">{escape(y_label)}</text>',
        ]
        for v in _ticks(*self.y):
            _, py = self.point(0, v)
            parts.append(f'<line x1="{LEFT - 4}" x2="{right}" y1="{py:.1f}" y2="{py:.1f}" stroke="#ddd"/>')
            parts.append(f'<text x="{LEFT - 7}" y="{py + 4:.1f}" text-anchor="end" font-size="11">{_fmt(v)}</text>')
        if x_ticks:
            for v in _ticks(*self.x):
                px, _ = self.point(v, 0)
                parts.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{bottom}" y2="{bottom + 4}" stroke="black"/>')
                parts.append(f'<text x="{px:.1f}" y="{bottom + 17}" text-anchor="middle" font-size="11">{_fmt(v)}</text>')
        # Axis lines last, so the light grid line at the bottom does not cover them.
        parts.append(f'<line x1="{LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="black"/>')
        parts.append(f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}" stroke="black"/>')
        return parts

    def legend_entry(self, i: int, label: str, color: str) -> str:
        x, y = LEFT + self.w + 12, TOP + 10 + 18 * i
        return (f'<rect x="{x}" y="{y - 8}" width="12" height="4" fill="{color}"/>'
                f'<text x="{x + 17}" y="{y - 2}" font-size="11">{escape(label)}</text>')


def _document(parts: list[str], width: float = WIDTH, height: float = HEIGHT) -> str:
    body = "\n".join(parts)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif">\n'
            f'<rect width="100%" height="100%" fill="white"/>\n{body}\n</svg>\n')


def _span(values: Sequence[float], pad: float = 0.0) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    if lo == hi:
        return lo - 0.5, hi + 0.5
    margin = (hi - lo) * pad
    return lo - margin, hi + margin


def _ticks(lo: float, hi: float, target: int = 6) -> list[float]:
    """Round-numbered ticks (1, 2 or 5 times a power of ten) inside [lo, hi]."""
    raw = (hi - lo) / target
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) >= 1e-9 else "0"


def _points(points: list[tuple[float, float]]) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in points)


def _blend(t: float) -> str:
    """White at t=0 to dark blue at t=1."""
    r, g, b = (round(255 + (c - 255) * t) for c in (8, 48, 107))
    return f"#{r:02x}{g:02x}{b:02x}"
