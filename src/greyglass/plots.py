"""Plots as self-contained SVG strings: no matplotlib, no fonts or scripts fetched from anywhere.

Four charts cover what greyglass reports: a line chart (several series, each with an optional
confidence band), a histogram, a heatmap with row/column labels and the value in each cell,
and a bar chart with error bars. Each returns an SVG document as a `str`; write it with
`save_svg(path, svg)` (atomic) into a run folder. Axes are linear; labels are escaped.

No text runs into other text. There is no font to measure here, so a label's width is
estimated from its length (`text_width`, a little wider than DejaVu Sans, the browsers'
usual sans-serif on Linux); a row of tick or category labels that would touch turns
vertical, and only if vertical labels would still touch is every k-th one kept. Margins grow
to hold long tick, category and legend labels, titles wrap, and heatmap cells widen to hold
their values, so a crowded chart comes out larger (a page scales it down) rather than garbled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import NamedTuple

from .atomic import write_text

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
PLOT_W, PLOT_H = 420, 300  # the plotting area of line charts, histograms and bar charts
HEATMAP_W = 470  # what a heatmap's cells share (60 px each at most), unless their values need more
LEFT, RIGHT, TOP, BOTTOM = 70, 150, 40, 60  # the least margins; the right one holds the legend
FONT_EM = 0.64  # estimated advance of one character, in font sizes (DejaVu Sans digits: 0.636)
ASCENT_EM, DESCENT_EM = 0.95, 0.25  # a line of text above and below its baseline (DejaVu: 0.93, 0.24)
GAP = 3.0  # pixels kept clear between neighbouring labels
TICK, TITLE, AXIS = 11, 15, 12  # font sizes: tick, category, legend and cell labels; titles; axis titles


class Series(NamedTuple):
    """One line: x and y values, and optionally the lower/upper edge of a band around it."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    lo: Sequence[float] | None = None
    hi: Sequence[float] | None = None


def line_chart(series: Sequence[Series], title: str, x_label: str, y_label: str,
               y_range: tuple[float, float] | None = None, x_ticks: Sequence[tuple[float, str]] | None = None) -> str:
    """Lines with markers; a shaded band between `lo` and `hi` where a series has them. `x_ticks`: labelled
    positions instead of numbered ticks (e.g. one per model)."""
    xs = [v for s in series for v in s.x]
    ys = [v for s in series for v in [*s.y, *(s.lo or []), *(s.hi or [])] if math.isfinite(v)]
    x_span = _span(xs, pad=0.0 if x_ticks is None else 0.2)  # labelled points sit clear of the plot's edges
    frame = _Frame(x_span, y_range or _span(ys, pad=0.05), title, x_label, y_label, x_ticks=x_ticks,
                   legend=[s.label for s in series])
    parts = frame.axes()
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
    return frame.document(parts, "line")


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
    frame = _Frame((lo, hi), (0.0, top * 1.05 or 1.0), title, x_label, y_label, legend=[n for n in counts if n])
    parts = frame.axes()
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
    return frame.document(parts, "histogram")


def bar_chart(labels: Sequence[str], values: Sequence[float], title: str, y_label: str,
              errors: Sequence[tuple[float, float]] | None = None) -> str:
    """One bar per label; `errors` gives each bar's (low, high) whisker ends."""
    ends = [v for pair in (errors or []) for v in pair]
    frame = _Frame((-0.5, len(labels) - 0.5), _span([0.0, *values, *ends], pad=0.05), title, "", y_label,
                   x_ticks=list(enumerate(labels)))
    parts = frame.axes()
    for i, v in enumerate(values):
        x0, top = frame.point(i - 0.35, max(v, 0))
        x1, bottom = frame.point(i + 0.35, min(v, 0))
        parts.append(f'<rect x="{x0:.1f}" y="{top:.1f}" width="{x1 - x0:.1f}" height="{bottom - top:.1f}" '
                     f'fill="{PALETTE[0]}"/>')
        if errors is not None:
            cx, ylo = frame.point(i, errors[i][0])
            _, yhi = frame.point(i, errors[i][1])
            parts.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{ylo:.1f}" y2="{yhi:.1f}" stroke="black"/>')
            parts += [f'<line x1="{cx - 5:.1f}" x2="{cx + 5:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="black"/>'
                      for y in (ylo, yhi)]
    return frame.document(parts, "bars")


def heatmap(matrix: Sequence[Sequence[float]], row_labels: Sequence[str], col_labels: Sequence[str],
            title: str, x_label: str = "", y_label: str = "", value_format: str = "{:.2f}",
            v_range: tuple[float, float] | None = None) -> str:
    """A grid of cells coloured white (low) to blue (high), each showing its value.

    Cells are at least wide enough for their values and tall enough for a row label; column
    labels turn vertical when they are wider than a cell.
    """
    values = [v for row in matrix for v in row if math.isfinite(v)]
    vmin, vmax = v_range or _span(values)
    texts = [[value_format.format(v) if math.isfinite(v) else "–" for v in row] for row in matrix]
    n_rows, n_cols = len(row_labels), len(col_labels)
    cell = max(min(60.0, HEATMAP_W / max(n_cols, 1)),
               _widest([t for row in texts for t in row]) + 2 * GAP, _line(TICK) + GAP)
    columns = _LabelRow.fit(col_labels, cell)
    left = max(LEFT, _widest(row_labels) + 6 + (_line(AXIS) + 2 * GAP + 4 if y_label else GAP))
    title_lines = _wrap(title, TITLE, max(left + n_cols * cell + 20, LEFT + PLOT_W + RIGHT) - 20)
    top = _title_height(title_lines) + 10 + columns.depth
    width = max(left + n_cols * cell + 20, _widest(title_lines, TITLE) + 20)
    height = top + n_rows * cell + (_line(AXIS) + 2 * GAP + 12 if x_label else 15)
    parts = _title(title_lines, width / 2)
    for r, row in enumerate(matrix):
        for c, v in enumerate(row):
            t = 0.0 if not math.isfinite(v) else (v - vmin) / ((vmax - vmin) or 1.0)
            x, y = left + c * cell, top + r * cell
            ink = "white" if t > 0.6 else "black"
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{cell:.1f}" height="{cell:.1f}" '
                         f'fill="{_blend(min(max(t, 0.0), 1.0))}" stroke="white"/>')
            parts.append(_text(x + cell / 2, _centred(y + cell / 2, TICK), texts[r][c], TICK, "middle", f' fill="{ink}"'))
    parts += [_text(left - 6, _centred(top + (r + 0.5) * cell, TICK), label, TICK, "end")
              for r, label in enumerate(row_labels)]
    parts += columns.draw([left + (c + 0.5) * cell for c in range(n_cols)], top - 6, above=True)
    parts.append(_text(left + n_cols * cell / 2, height - 12, x_label, AXIS, "middle"))
    parts.append(_vertical_title(top + n_rows * cell / 2, y_label))
    return _document(parts, width, height, "heatmap")


def save_svg(path: str | Path, svg: str) -> Path:
    """Write an SVG string to `path` atomically."""
    write_text(path, svg)
    return Path(path)


def text_width(text: str, size: float) -> float:
    """The estimated width in pixels of `text` drawn at font size `size` (characters times `FONT_EM`)."""
    return len(text) * size * FONT_EM


class _LabelRow(NamedTuple):
    """How a row of labels along the x axis is drawn so that no two touch."""

    labels: Sequence[str]
    vertical: bool  # turned a quarter, reading upwards
    stride: int  # every stride-th label is drawn
    depth: float  # pixels the row takes away from its axis

    @staticmethod
    def fit(labels: Sequence[str], spacing: float, size: float = TICK) -> _LabelRow:
        """Horizontal if the widest label fits `spacing` (px between label centres), else vertical,
        thinned to every k-th label only if a vertical line of text is still wider than the spacing."""
        widest = _widest(labels, size)
        if widest + GAP <= spacing:
            return _LabelRow(labels, False, 1, _line(size) + 8)
        stride = max(1, math.ceil((_line(size) + GAP) / max(spacing, 1e-9)))
        return _LabelRow(labels, True, stride, widest + 8)

    def draw(self, xs: Sequence[float], axis_y: float, above: bool = False, size: float = TICK) -> list[str]:
        """The labels centred on `xs`, starting 8 px (`above`: 6 px) away from the axis at `axis_y`."""
        parts = []
        for i in range(0, len(self.labels), self.stride):
            x, label = xs[i], self.labels[i]
            if not self.vertical:
                y = axis_y - 6 - DESCENT_EM * size if above else axis_y + 8 + ASCENT_EM * size
                parts.append(_text(x, y, label, size, "middle"))
            else:  # the glyphs' middle on x; reading upwards, starting at the axis
                gx, gy = x + (ASCENT_EM - DESCENT_EM) / 2 * size, axis_y - 6 if above else axis_y + 8
                parts.append(_text(gx, gy, label, size, "start" if above else "end",
                                   f' transform="rotate(-90 {gx:.1f} {gy:.1f})"'))
        return parts


class _Frame:
    """The layout of a chart with axes: maps data coordinates to pixels in the plotting area,
    with margins wide enough for its tick, category, title and legend labels."""

    def __init__(self, x: tuple[float, float], y: tuple[float, float], title: str, x_label: str, y_label: str,
                 x_ticks: Sequence[tuple[float, str]] | None = None, legend: Sequence[str] = ()):
        self.x, self.y = x, y
        self.x_label, self.y_label = x_label, y_label
        self.y_ticks = [(v, _fmt(v)) for v in _ticks(*y)]
        self.x_ticks = [(v, _fmt(v)) for v in _ticks(*x)] if x_ticks is None else list(x_ticks)
        at = sorted(v for v, _ in self.x_ticks)
        spacing = min((PLOT_W * (b - a) / ((x[1] - x[0]) or 1.0) for a, b in zip(at, at[1:])), default=PLOT_W)
        self.x_row = _LabelRow.fit([label for _, label in self.x_ticks], spacing)
        # y tick labels end 7 px left of the axis and must clear the y title (x up to 16 + descent).
        self.left = max(LEFT, math.ceil(16 + DESCENT_EM * AXIS + GAP + _widest([t for _, t in self.y_ticks]) + 7))
        self.width = self.left + PLOT_W + max(RIGHT, math.ceil(12 + 17 + _widest(legend) + 8))
        self.title_lines = _wrap(title, TITLE, self.width - 20)
        self.width = max(self.width, math.ceil(_widest(self.title_lines, TITLE) + 20))  # a word wider than the chart
        self.top = max(TOP, math.ceil(_title_height(self.title_lines) + 12))
        self.bottom = self.top + PLOT_H
        self.x_label_y = self.bottom + max(45.0, self.x_row.depth + GAP + ASCENT_EM * AXIS)
        self.height = self.x_label_y + 15 if x_label else self.bottom + max(BOTTOM, self.x_row.depth + 10)

    def point(self, x: float, y: float) -> tuple[float, float]:
        fx = (x - self.x[0]) / ((self.x[1] - self.x[0]) or 1.0)
        fy = (y - self.y[0]) / ((self.y[1] - self.y[0]) or 1.0)
        return self.left + fx * PLOT_W, self.top + (1 - fy) * PLOT_H

    def axes(self) -> list[str]:
        right = self.left + PLOT_W
        parts = _title(self.title_lines, self.width / 2)
        parts.append(_text(self.left + PLOT_W / 2, self.x_label_y, self.x_label, AXIS, "middle"))
        parts.append(_vertical_title(self.top + PLOT_H / 2, self.y_label))
        for v, label in self.y_ticks:
            _, py = self.point(0, v)
            parts.append(f'<line x1="{self.left - 4}" x2="{right}" y1="{py:.1f}" y2="{py:.1f}" stroke="#ddd"/>')
            parts.append(_text(self.left - 7, _centred(py, TICK), label, TICK, "end"))
        xs = [self.point(v, 0)[0] for v, _ in self.x_ticks]
        parts += [f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{self.bottom}" y2="{self.bottom + 4}" stroke="black"/>' for px in xs]
        parts += self.x_row.draw(xs, self.bottom)
        # Axis lines last, so the light grid line at the bottom does not cover them.
        parts.append(f'<line x1="{self.left}" y1="{self.bottom}" x2="{right}" y2="{self.bottom}" stroke="black"/>')
        parts.append(f'<line x1="{self.left}" y1="{self.top}" x2="{self.left}" y2="{self.bottom}" stroke="black"/>')
        return parts

    def legend_entry(self, i: int, label: str, color: str) -> str:
        x, y = self.left + PLOT_W + 12, self.top + 10 + 18 * i
        return f'<rect x="{x}" y="{y - 8}" width="12" height="4" fill="{color}"/>' + _text(x + 17, y - 2, label, TICK)

    def document(self, parts: list[str], chart: str) -> str:
        return _document(parts, self.width, self.height, chart)


def _text(x: float, y: float, text: str, size: float, anchor: str = "start", extra: str = "") -> str:
    """A <text> element, or "" for empty text (an empty element would still be laid out)."""
    if not text:
        return ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size:g}"{extra}>'
            f'{escape(text)}</text>')


def _title(lines: Sequence[str], centre: float) -> list[str]:
    return [_text(centre, 24 + i * _line(TITLE), line, TITLE, "middle") for i, line in enumerate(lines)]


def _title_height(lines: Sequence[str]) -> float:
    """Where the last title line ends (its baseline plus the descent)."""
    return 24 + (len(lines) - 1) * _line(TITLE) + DESCENT_EM * TITLE


def _vertical_title(centre_y: float, label: str) -> str:
    """An axis title reading upwards along the left edge, its glyphs between x=4 and x=16+descent."""
    return _text(16, centre_y, label, AXIS, "middle", f' transform="rotate(-90 16 {centre_y:.1f})"')


def _centred(y: float, size: float) -> float:
    """The baseline that centres a line of text vertically on `y`."""
    return y + (ASCENT_EM - DESCENT_EM) / 2 * size


def _line(size: float) -> float:
    return (ASCENT_EM + DESCENT_EM) * size


def _widest(labels: Sequence[str], size: float = TICK) -> float:
    return max((text_width(label, size) for label in labels), default=0.0)


def _wrap(text: str, size: float, width: float) -> list[str]:
    """`text` broken at spaces into as few lines as fit `width`, of about equal length (no
    one-word last line); a single word wider than `width` keeps a line of its own."""
    lines = _fill(text, size, width)
    narrower = text_width(text, size) / len(lines)
    while len(shorter := _fill(text, size, narrower)) > len(lines):
        narrower += size
    return shorter


def _fill(text: str, size: float, width: float) -> list[str]:
    """`text` broken greedily at spaces into lines no wider than `width`."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and text_width(f"{lines[-1]} {word}", size) <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines


def _document(parts: list[str], width: float, height: float, chart: str) -> str:
    """The SVG file; `data-chart` names the kind of chart, for tests and styling."""
    body = "\n".join(part for part in parts if part)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif" data-chart="{chart}">\n'
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
