"""The three kinds of HTML page (the report, the browser, the feature dashboards) come from one base
template and one stylesheet, and escape every value that came from a run folder, a database or a request."""

import re
from importlib.resources import files

import pytest
from serve_runs import make_runs

from greyglass.latents.db import FeatureDB
from greyglass.latents.dashboard import histogram_svg, index_page, latent_page, write_html
from greyglass.plots import Series, bar_chart, heatmap, histogram, line_chart
from greyglass.report.build import build_report
from greyglass.report.section import Section
from greyglass.report.page import render_page
from greyglass.runs import write_config, write_results
from greyglass.templates import trusted_svg

EVIL = "<script>alert(1)</script>\"'&"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&#39;&amp;"
STYLESHEET = (files("greyglass") / "templates" / "style.css").read_text().strip()
FEATURES = "sae/s1/features"


def assert_escaped(html: str, times: int) -> None:
    """`EVIL` shows up `times` times, always escaped: no tag or quote from it reaches the page as markup."""
    assert "<script" not in html.lower() and EVIL not in html
    assert html.count(ESCAPED) == times, html


@pytest.fixture(scope="module")
def root(tiny_llama, tmp_path_factory):
    root = make_runs(tmp_path_factory.mktemp("runs"), tiny_llama)
    evil = root / "mystery" / "m1"
    write_config(evil, EVIL, command=EVIL, model={"name": EVIL})
    write_results(evil, {EVIL: EVIL})
    return root


@pytest.fixture(scope="module")
def client(root, tiny_llama):
    from starlette.testclient import TestClient

    from greyglass.serve.app import create_app

    return TestClient(create_app(root, load=lambda spec: tiny_llama))


def test_report_escapes_every_field_of_a_section():
    section = Section(kind=EVIL, title=EVIL, headline=EVIL, numbers=[(EVIL, EVIL)], shows=[EVIL], does_not_show=[EVIL],
                      provenance={EVIL: EVIL}, notes=[EVIL])
    # page title and h1, summary title and headline, then kind, title, headline, note, both cells of the number,
    # shows, does-not-show, both cells of the provenance row
    assert_escaped(render_page([section], title=EVIL), 14)


def test_report_escapes_what_a_run_folder_holds(root, tmp_path):
    html = build_report([root / "mystery"], tmp_path / "r.html").read_text()
    # summary title and headline, kind, title, headline, the result's name and value, model and command
    assert_escaped(html, 9)


def test_dashboards_escape_labels_tokens_and_metadata(root):
    db = FeatureDB(root / FEATURES)
    row = db.latent(db.latent_rows()[0]["latent"])
    row.update(label=EVIL, explanation=EVIL, detection=0.5,
               promoted=[(EVIL, 1.0)] + row["promoted"][1:], suppressed=[(EVIL, -1.0)] + row["suppressed"][1:])
    for ctx in row["top"] + row["quantile"]:
        ctx["tokens"][0] = (EVIL, ctx["tokens"][0][1])
    meta = {**db.meta, "site": EVIL, "model": EVIL}
    contexts = len(row["top"]) + len(row["quantile"])
    assert contexts > 0
    # site and model, label, explanation, promoted and suppressed token, one token of every context
    for in_browser in (False, True):
        assert_escaped(latent_page(row, meta, in_browser=in_browser), 6 + contexts)
    assert_escaped(index_page([row], meta), 3)  # site, model, the row's label


@pytest.mark.parametrize("url, params, status, times", [
    (f"/features/{FEATURES}/index.html", {"fires_on": EVIL, "text": EVIL}, 200, 2),  # both inputs echo their value
    (f"/features/{FEATURES}/index.html", {"q": EVIL}, 400, 0),  # not FTS syntax: the error names the query
    ("/eval/eval/e1", {"field": "answer", "value": EVIL}, 200, 1),
    ("/text", {"text": EVIL, "features": FEATURES}, 200, 1),
    ("/steer", {"latent": EVIL}, 200, 1),
    ("/steer", {"prompt": EVIL, "vector": "direction:probe/p1/direction", "max_tokens": 2}, 200, 1),
    ("/steer", {"prompt": "hi", "vector": f"features:{FEATURES}", "latent": EVIL}, 400, 0),
    ("/run/mystery/m1", {}, 200, 9),  # kind and model under the title, the section as in the report less the summary
])
def test_browser_escapes_query_parameters_and_run_contents(client, url, params, status, times):
    r = client.get(url, params=params)
    assert r.status_code == status, r.text[:500]
    assert_escaped(r.text, times)
    if status != 200:
        assert "&lt;script&gt;" in r.text  # the error sentence quotes what was sent, escaped


def test_every_page_kind_shares_the_base_template_and_stylesheet(root, client, tmp_path):
    pages = {"report": build_report([root], tmp_path / "r.html").read_text()}
    dashboards = write_html(FeatureDB(root / FEATURES), tmp_path / "dash")
    pages["dashboard index"] = (dashboards / "index.html").read_text()
    pages["dashboard"] = next(dashboards.glob("latent_*.html")).read_text()
    for url in ("/", "/run/capture/c1", f"/features/{FEATURES}/latent_3.html", "/steer", "/no/such/page"):
        pages[url] = client.get(url).text
    head = re.compile(r'^<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
                      r'content="width=device-width, initial-scale=1">\n<title>[^<]*</title>\n<style>\n')
    for name, html in pages.items():
        assert head.match(html), name
        assert html.count("<style") == 1 and html.count(STYLESHEET) == 1, name


def test_only_plain_svg_drawings_are_inlined():
    figures = [line_chart([Series(EVIL, [0, 1], [0.2, 0.4], lo=[0.1, 0.3], hi=[0.3, 0.5])], EVIL, EVIL, EVIL),
               histogram([0.1, 0.5, 0.5, 0.9], EVIL, EVIL),
               bar_chart([EVIL, "b"], [1.0, 2.0], EVIL, EVIL, errors=[(0.5, 1.5), (1.5, 2.5)]),
               heatmap([[0.1, 0.9]], [EVIL], [EVIL, "b"], EVIL, EVIL, EVIL),
               histogram_svg([0, 3, 1], [0.1, 1.0, 10.0, 100.0])]
    for svg in figures:
        drawing = svg[svg.index("<svg"):]
        assert trusted_svg(drawing) == drawing and "<script" not in drawing
    for active in ["<svg><script>alert(1)</script></svg>", '<svg onload="alert(1)"></svg>',
                   '<svg><image href="https://example.com/x.png"/></svg>', "<svg><foreignObject><p>x</p></foreignObject></svg>",
                   '<svg><rect fill="url(https://example.com/x)"/></svg>', '<svg><a xlink:href="javascript:alert(1)"/></svg>',
                   "<p>not a drawing</p>"]:
        assert trusted_svg(active) == '<p class="error">This figure was left out: it is not a plain SVG drawing.</p>'
    html = Section("k", "t", "h", [], [], [], {}, figure_svg="<svg><script>alert(1)</script></svg>").render("s0")
    assert "<script" not in html and "left out" in html
