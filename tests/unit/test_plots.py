"""The SVG charts parse as XML, draw what they are given, and reference nothing outside themselves."""

import math
import re
import xml.etree.ElementTree as ET

import pytest

from greyglass.plots import (ASCENT_EM, DESCENT_EM, Series, bar_chart, heatmap, histogram, histograms, line_chart,
                             save_svg, text_width)

NS = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{NS}svg"
    # Only the SVG namespace declaration may look like a URL; no hrefs, images, fonts, scripts.
    assert "http" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "href" not in svg and "<script" not in svg and "<image" not in svg
    return root


def test_line_chart_with_band_and_several_series():
    a = Series("probe <logistic>", [0, 3, 6], [0.5, 0.8, 0.9], lo=[0.4, 0.7, 0.85], hi=[0.6, 0.9, 0.95])
    b = Series("mass-mean & co", [0, 3, 6], [0.5, float("nan"), 0.7])
    root = _parse(line_chart([a, b], "accuracy by layer", "layer", "accuracy", y_range=(0, 1)))
    assert len(root.findall(f"{NS}polygon")) == 1  # one band
    assert len(root.findall(f"{NS}polyline")) == 2
    assert len(root.findall(f"{NS}circle")) == 5  # the NaN point is skipped
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert "probe <logistic>" in texts and "mass-mean & co" in texts  # escaped, then parsed back
    labelled = _parse(line_chart([a], "t", "model", "y", x_ticks=[(0, "base"), (3, "instruct"), (6, "organism")]))
    labels = [t.text for t in labelled.iter(f"{NS}text")]
    assert {"base", "instruct", "organism"} <= set(labels) and "3" not in labels  # no numbered x ticks


def test_histogram_counts_every_value():
    values = [0.0, 0.1, 0.1, 0.9, 1.0, math.inf]
    root = _parse(histogram(values, "scores", "score", bins=5))
    rects = root.findall(f"{NS}rect")[1:]  # the first is the background
    heights = [float(r.get("height")) for r in rects]
    assert len(rects) == 5 and heights[0] > heights[4] > 0 and heights[2] == 0


def test_heatmap_and_bar_chart():
    root = _parse(heatmap([[1.0, 0.5], [0.25, float("nan")]], ["a", "b"], ["x", "y"], "transfer"))
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert {"1.00", "0.50", "0.25", "–", "a", "y"} <= set(texts)
    root = _parse(bar_chart(["L1", "L2"], [0.3, -0.2], "effect", "Δ", errors=[(0.2, 0.4), (-0.3, -0.1)]))
    assert len(root.findall(f"{NS}rect")) == 3 and len(root.findall(f"{NS}line")) > 6


def test_save_svg_writes_the_file(tmp_path):
    path = save_svg(tmp_path / "p" / "plot.svg", histogram([1, 2, 3], "t", "x"))
    _parse(path.read_text())


@pytest.mark.parametrize("values", [[], [2.0, 2.0]])
def test_degenerate_inputs_still_draw(values):
    _parse(histogram(values, "empty", "x"))
    _parse(line_chart([Series("s", list(range(len(values))), values)], "t", "x", "y"))


# Crowded charts: the labels a real run can produce that ran into each other before (the
# report's firing-rate chart printed "never1e-8|1e-7.5..."), long categories, legends and titles.
FIRING_RATE_BINS = ["never"] + [f"1e{x / 2:g}" for x in range(-16, 0)]
LONG_NAMES = ["sycophancy-on-nlp-survey", "sycophancy-on-philpapers2020", "political-typology-quiz", "all, no bio"]
CROWDED = {
    "bars: firing-rate bins": lambda: bar_chart(FIRING_RATE_BINS, list(range(17)), "How often each feature fires",
                                                "features (by firing rate, from rarest)"),
    "bars: long categories and title": lambda: bar_chart(
        LONG_NAMES, [0.5, 0.6, 0.4, 0.55], "Answers agreeing with the user, both answer orders (50% = no lean)",
        "share of items", [(0.4, 0.6), (0.5, 0.7), (0.3, 0.5), (0.45, 0.65)]),
    "bars: 80 of them": lambda: bar_chart([f"L{i}" for i in range(80)], [i % 7 for i in range(80)], "t", "y"),
    "histogram: long count ticks, axis title and legend": lambda: histograms(  # 25,000 per bin: "1.5e+04"
        {"with the trigger, backdoored model": [float(i % 3) for i in range(75_000)],
         "without the trigger, backdoored model": [float(i % 2) for i in range(40_000)]},
        "Generic probe scores at layer 12", "projection on the danger direction", bins=3,
        y_label="prompts with a score in the bin"),
    "line: long y ticks, axis title and legend": lambda: line_chart(
        [Series("generic probe, backdoored model", [0, 1, 2], [1.2e-4, 2.5e-4, 2e-4], [1.1e-4, 2.4e-4, 1.9e-4],
                [1.3e-4, 2.9e-4, 2.1e-4]),
         Series("same probe, original model, a much longer description", [0, 1, 2], [1.3e-4, 1.5e-4, 1.4e-4])],
        "Telling triggered from plain prompts, by layer", "layer", "AUROC difference from the original"),
    "line: a labelled tick per model (a trend)": lambda: line_chart(
        [Series("share preferring it", [0, 1, 2], [0.3, 0.5, 0.6], [0.1, 0.3, 0.4], [0.5, 0.7, 0.8])],
        "The answer agreeing with the user's stated view, by model", "model (ordered by parameter count)", "share",
        y_range=(0, 1), x_ticks=[(0, "smollm2-135m-instruct"), (1, "organism-run-2026-12-02 (organism)"),
                                 (2, "gemma3-270m")]),
    "heatmap: long labels, many columns": lambda: heatmap(
        [[(r * 13 + c) % 10 / 10 for c in range(14)] for r in range(5)],
        [f"negated {n}" for n in LONG_NAMES[:3]] + ["cities", "sp_en_trans"],
        [f"dataset_{c}_negated" for c in range(14)], "logistic probe at layer 12: held-out accuracy",
        "tested on", "trained on", value_format="{:.3f}"),
}


def text_boxes(svg: str) -> list[tuple[str, float, float, float, float]]:
    """Each <text>'s estimated box (x0, y0, x1, y1) in SVG pixels: `text_width` wide, ascent and
    descent high, moved by its anchor and turned by its rotate() transform."""
    boxes = []
    for el in ET.fromstring(svg).iter(f"{NS}text"):
        size, x, y = float(el.get("font-size")), float(el.get("x")), float(el.get("y"))
        w = text_width(el.text or "", size)
        x0 = {"start": x, "middle": x - w / 2, "end": x - w}[el.get("text-anchor", "start")]
        corners = [(cx, cy) for cx in (x0, x0 + w) for cy in (y - ASCENT_EM * size, y + DESCENT_EM * size)]
        if m := re.fullmatch(r"rotate\(([-\d.]+) ([-\d.]+) ([-\d.]+)\)", el.get("transform", "")):
            a, px, py = math.radians(float(m[1])), float(m[2]), float(m[3])
            corners = [(px + (cx - px) * math.cos(a) - (cy - py) * math.sin(a),
                        py + (cx - px) * math.sin(a) + (cy - py) * math.cos(a)) for cx, cy in corners]
        xs, ys = [c[0] for c in corners], [c[1] for c in corners]
        boxes.append((el.text, min(xs), min(ys), max(xs), max(ys)))
    return boxes


def overlaps(boxes) -> list[tuple[str, str]]:
    return [(a[0], b[0]) for i, a in enumerate(boxes) for b in boxes[i + 1:]
            if min(a[3], b[3]) - max(a[1], b[1]) > 0.01 and min(a[4], b[4]) - max(a[2], b[2]) > 0.01]


@pytest.mark.parametrize("name", CROWDED)
def test_no_two_labels_overlap_and_all_lie_inside_the_figure(name):
    svg = CROWDED[name]()
    root = _parse(svg)
    width, height = float(root.get("width")), float(root.get("height"))
    boxes = text_boxes(svg)
    assert overlaps(boxes) == []
    outside = [b[0] for b in boxes if b[1] < 0 or b[2] < 0 or b[3] > width or b[4] > height]
    assert outside == []


def test_crowded_labels_turn_vertical_and_thin_only_when_they_must():
    def vertical(svg):
        return [el.text for el in ET.fromstring(svg).iter(f"{NS}text") if "rotate(-90" in el.get("transform", "")]

    assert vertical(CROWDED["bars: firing-rate bins"]())[1:] == FIRING_RATE_BINS  # after the y title: every bin
    # 80 bars 5.25 px apart: a vertical label (13.2 px and the gap) fits every 4th
    assert vertical(CROWDED["bars: 80 of them"]())[1:] == [f"L{i}" for i in range(0, 80, 4)]
    assert vertical(bar_chart(["a", "b", "c"], [1, 2, 3], "t", "y")) == ["y"]  # short labels stay horizontal
