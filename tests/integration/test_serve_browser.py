"""The browser end to end: uvicorn on a loopback port, the real embedded model, Debian's chromium via Playwright.

Screenshots of the main pages go to the test's tmp folder; set GREYGLASS_SCREENSHOTS=docs/screenshots
to also keep copies there (how the committed ones were made). Every kind of chart a run page or a
report shows is screenshotted too, and the browser's own text boxes must not overlap.
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from serve_runs import make_figure_runs, make_runs

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def server(smollm, tmp_path_factory):
    from greyglass.serve.app import create_app
    from greyglass.serve.listen import serving

    root = make_runs(tmp_path_factory.mktemp("runs"), smollm)
    with serving(create_app(root, load=lambda spec: smollm)) as url:
        yield url


@pytest.fixture(scope="module")
def figure_server(smollm, tmp_path_factory):
    from greyglass.serve.app import create_app
    from greyglass.serve.listen import serving

    root = tmp_path_factory.mktemp("figure_runs")
    ids = make_figure_runs(root)
    with serving(create_app(root, load=lambda spec: smollm)) as url:
        yield url, root, ids


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install chromium`; `make test` does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        ctx = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=ARGS,
                                                   viewport={"width": 1100, "height": 800})
        yield ctx
        ctx.close()


@pytest.mark.slow
def test_pages_search_and_steering_in_a_real_browser(server, browser, tmp_path):
    shots = tmp_path / "screenshots"
    shots.mkdir()
    page = browser.new_page()
    failed: list[str] = []
    page.on("requestfailed", lambda r: failed.append(r.url))

    def shot(name: str) -> None:
        page.screenshot(path=str(shots / f"{name}.png"))

    page.goto(server + "/")
    assert page.title() == "Runs · greyglass" and page.locator("table tr").count() == 4  # header + 3 runs
    shot("runs")

    page.click("text=capture/c1")
    assert "What we recorded inside the model" in page.inner_text("section")
    shot("run")

    page.goto(server + "/eval/eval/e1")
    page.click("a[href='/item/eval/e1/3']")
    assert "Is 3 even?" in page.inner_text("table")
    shot("eval_item")

    page.goto(server + "/features")
    page.click("text=sae/s1/features")
    page.fill("input[name=q]", "the")
    page.click("button[type=submit]")
    page.wait_for_selector("h2:has-text('Latents matching')")
    page.fill("input[name=q]", "")
    page.fill("input[name=text]", "The bridge over the river")
    page.click("button[type=submit]")
    page.wait_for_selector("h2:has-text('Latents most active on the text')")
    shot("features_search")
    page.locator("h2:has-text('Latents most active') + table a").first.click()
    assert page.inner_text("h1").startswith("Latent ")
    shot("latent")

    page.goto(server + "/text")
    page.fill("textarea[name=text]", "Paris is the capital of France.")
    page.click("button[type=submit]")
    page.wait_for_selector("h2:has-text('Latents on each token')")
    assert page.locator(".tok").count() > 10 and "probe/p1/direction" in page.content()
    shot("text")

    page.goto(server + "/steer")
    page.fill("textarea[name=prompt]", "Tell me about the sea.")
    page.select_option("select[name=vector]", "direction:probe/p1/direction")
    page.fill("input[name=coef]", "8")
    page.fill("input[name=max_tokens]", "12")
    page.click("button[type=submit]")
    page.wait_for_selector("#steered", timeout=60_000)
    assert page.inner_text("#baseline").strip() and page.inner_text("#steered").strip()
    shot("steer")

    page.goto(server + "/run/..%2F..%2Fetc%2Fpasswd")
    assert "That did not work" in page.content() and "Traceback" not in page.content()
    assert not failed, f"requests failed: {failed}"
    assert all((shots / f"{n}.png").stat().st_size > 1000 for n in ("runs", "run", "features_search", "latent", "text", "steer"))
    if keep := os.environ.get("GREYGLASS_SCREENSHOTS"):
        Path(keep).mkdir(parents=True, exist_ok=True)
        for png in shots.glob("*.png"):
            shutil.copy(png, Path(keep) / png.name)


# Every <text> of an <svg data-chart> (a greyglass.plots chart) with the browser's box for it.
TEXT_BOXES = """svg => ({chart: svg.dataset.chart, box: [svg.getBoundingClientRect().left, svg.getBoundingClientRect().top,
                                             svg.getBoundingClientRect().right, svg.getBoundingClientRect().bottom],
  texts: Array.from(svg.querySelectorAll('text')).map(t => {
    const r = t.getBoundingClientRect(); return [t.textContent, r.left, r.top, r.right, r.bottom]; })})"""


def overlapping(texts: list) -> list[tuple[str, str]]:
    return [(a[0], b[0]) for i, a in enumerate(texts) for b in texts[i + 1:]
            if min(a[3], b[3]) - max(a[1], b[1]) > 0.5 and min(a[4], b[4]) - max(a[2], b[2]) > 0.5]


@pytest.mark.slow
def test_every_chart_kind_on_run_pages_and_in_a_report_has_no_overlapping_text(figure_server, browser, tmp_path):
    from greyglass.report.build import build_report

    url, root, ids = figure_server
    pages = {"report": build_report([root], tmp_path / "report.html").as_uri(),
             **{f"run-{rid}": f"{url}/run/{rid}" for rid in ids}}
    page = browser.new_page()
    seen: dict[str, set[str]] = {}
    for name, address in pages.items():
        page.goto(address)
        for i, svg in enumerate(page.locator("svg[data-chart]").all()):
            svg.scroll_into_view_if_needed()
            svg.screenshot(path=str(tmp_path / f"{name}-{i}.png"))
            drawn = svg.evaluate(TEXT_BOXES)
            where = f"{name}, chart {i} ({drawn['chart']}, {tmp_path / f'{name}-{i}.png'})"
            assert len(drawn["texts"]) > 5 and overlapping(drawn["texts"]) == [], where
            x0, y0, x1, y1 = drawn["box"]
            assert all(x0 - 0.5 <= t[1] and t[3] <= x1 + 0.5 and y0 - 0.5 <= t[2] and t[4] <= y1 + 0.5
                       for t in drawn["texts"]), f"text outside the figure: {where}"
            seen.setdefault(drawn["chart"], set()).add(name.split("-")[0])
    # plots.heatmap draws the probe transfer matrix, which no page shows yet (tests/unit/test_plots.py covers it)
    assert seen == {kind: {"report", "run"} for kind in ("bars", "line", "histogram")}
