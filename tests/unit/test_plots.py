"""The SVG charts parse as XML, draw what they are given, and reference nothing outside themselves."""

import math
import xml.etree.ElementTree as ET

import pytest

from greyglass.plots import Series, bar_chart, heatmap, histogram, line_chart, save_svg

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
