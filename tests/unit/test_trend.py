"""`greyglass trend` on tiny models saved as folders: sub-runs, ordering, resume, bad input, and the rule that
calls a trend, on constructed numbers where it must and must not flag one."""

import json

import pytest
from markupsafe import escape
from starlette.testclient import TestClient

from greyglass.behaviour.jobs import EVAL
from greyglass.behaviour.results import Difference
from greyglass.cli import main
from greyglass.errors import GreyglassError
from greyglass.job import read_job_run
from greyglass.models.loader import load_model
from greyglass.models.tiny import tiny_model
from greyglass.report.build import section_for
from greyglass.serve.app import create_app
from greyglass.stats import Estimate
from greyglass.trend.config import TrendConfig, verdict
from greyglass.trend.jobs import TREND
from greyglass.trend.run import paired_change


def _save(lm, folder):
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A small base model, a middle-sized organism run folder (a chat model in model/) and a larger chat model."""
    root = tmp_path_factory.mktemp("trend-models")
    small = _save(tiny_model("llama", n_layers=2, d_model=32), root / "small")
    organism = root / "organism-run"
    _save(tiny_model("llama", n_layers=3, d_model=48, chat=True, seed=2), organism / "model")
    (organism / "config.json").write_text(json.dumps({"kind": "organism", "layout": 2}))
    big = _save(tiny_model("llama", n_layers=4, d_model=64, chat=True, seed=1), root / "big")
    return small, organism, big


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Six short two-answer questions (the tiny models read bytes: the bundled evals' long prompts are slow)."""
    path = tmp_path_factory.mktemp("trend-data") / "mine.jsonl"
    rows = [{"question": f"Is {i} odd?\n (A) yes\n (B) no", "answer_matching_behavior": " (A)",
             "answer_not_matching_behavior": " (B)"} for i in range(6)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _trend(out, data, *models, extra=()):
    flags = [f for m in models for f in ("--model", str(m))]
    return main(["trend", *flags, "--eval", "behaviour", "--datasets", str(data), "--batch-size", "12", *extra,
                 "--out", str(out), "--no-progress"])


def test_trend_runs_each_model_as_an_eval_sub_run_in_parameter_order_and_resumes(models, data, tmp_path, capsys):
    small, organism, big = models
    out = tmp_path / "trend"
    assert _trend(out, data, big, organism, small) == 0
    printed = capsys.readouterr().out
    assert section_for(out).summary() in printed  # the terminal says what the report says
    run = read_job_run(TREND, out)
    res = run.results
    assert [m.label for m in res.models] == ["small", "organism-run (organism)", "big"]  # smallest first
    counted = [sum(p.numel() for p in load_model(str(f)).model.parameters()) for f in (small, organism / "model", big)]
    assert [m.parameters for m in res.models] == counted and counted == sorted(counted)
    for m in res.models:  # each model's eval is an ordinary eval run folder, read back as the report reads it
        sub = read_job_run(EVAL, out / m.folder)
        assert sub.results.all == m.all and sub.config.eval == "behaviour" and sub.results.n_items == 12
    # the change pairs the first and the last model's questions; the steps pair neighbours
    assert res.change is not None and res.change.n == res.models[0].all.n == res.models[-1].all.n
    assert len(res.steps) == 2 and res.verdict == verdict(res.change)
    assert res.change.matched.lo < res.change.matched.hi  # a finite sample: never a zero-width interval
    svg = (out / "trend.svg").read_text()
    assert all(m.label in svg for m in res.models)

    # resumed: finished sub-runs are read back, not asked again, and the result is the same
    stamps = {m.folder: (out / m.folder / "items.jsonl").stat().st_mtime_ns for m in res.models}
    assert _trend(out, data, big, organism, small, extra=["--resume"]) == 0
    assert {m.folder: (out / m.folder / "items.jsonl").stat().st_mtime_ns for m in res.models} == stamps
    assert read_job_run(TREND, out).results == res
    # given order and labels: base then instruct, as listed
    capsys.readouterr()
    labels = ["--label", "base", "--label", "chat"]
    assert _trend(tmp_path / "given", data, small, big, extra=["--order", "given", *labels]) == 0
    given = read_job_run(TREND, tmp_path / "given").results
    assert [m.label for m in given.models] == ["base", "chat"] and given.order == "given"
    assert "in the order given" in capsys.readouterr().out

    # the browser lists the trend and each model's eval, and shows the trend's report section with its plot
    client = TestClient(create_app(tmp_path))
    listing = client.get("/").text
    assert 'href="/run/trend"' in listing and f'href="/run/trend/{res.models[0].folder}"' in listing
    page = client.get("/run/trend").text
    assert str(escape(section_for(out).headline)) in page and 'data-chart="line"' in page

    # a finished folder is not overwritten, and a resume with other eval settings is refused
    assert _trend(out, data, big, small) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert _trend(out, data, big, small, extra=["--limit", "3", "--resume"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_a_model_served_over_http_is_one_row(models, data, tmp_path, capsys):
    from greyglass.serve.listen import serving
    from greyglass.serve.model_api import ModelServer, create_model_app

    small, _, big = models
    server = ModelServer(load_model(str(big)))
    try:
        with serving(create_model_app(server)) as url:
            out = tmp_path / "trend"
            assert _trend(out, data, small, f"{url}/v1#tiny", extra=["--order", "given"]) == 0
    finally:
        server.close()
    assert section_for(out).summary() in capsys.readouterr().out
    local, served = read_job_run(TREND, out).results.models
    assert served.parameters is None and served.label == f"{url.removeprefix('http://')} tiny"
    sub = read_job_run(EVAL, out / served.folder)
    assert sub.config.server.url == f"{url}/v1" and sub.config.server.server_model == "tiny"
    assert served.all.n == local.all.n == 6


def test_bad_input_is_a_clear_error(models, tmp_path, capsys):
    small, _, big = models
    for i, (flags, message) in enumerate([
        (["--model", str(small), "--model", str(big), "--eval", "cot"], "EvalConfig.eval"),
        (["--model", str(small)], "at least two models"),
        (["--model", str(small), "--model", str(small)], "given twice"),
        (["--model", str(small), "--model", str(big), "--label", "a"], "one per model"),
        (["--model", str(small), "--model", "http://127.0.0.1:9/v1"], "use --order given"),
        (["--model", str(small), "--model", str(tmp_path / "missing")], "no such model folder"),
        (["--model", str(small), "--model", str(tmp_path)], "no config.json"),
    ]):
        assert main(["trend", *flags, "--limit", "2", "--out", str(tmp_path / f"run{i}"), "--no-progress"]) == 2, flags
        assert message in capsys.readouterr().err, flags


def _est(lo, hi):
    return Estimate((lo + hi) / 2, lo, hi)


def test_the_rule_calls_a_trend_only_when_both_paired_intervals_exclude_zero_on_one_side():
    up, down, spans = _est(0.05, 0.3), _est(-0.3, -0.02), _est(-0.1, 0.2)
    cases = {(up, up): "rises", (down, down): "falls", (up, spans): "mixed", (spans, down): "mixed",
             (up, down): "mixed", (spans, spans): "none", (_est(0.0, 0.2), up): "mixed"}  # touching 0 excludes nothing
    for (matched, p_match), expected in cases.items():
        assert verdict(Difference(n=10, n_questions=5, matched=matched, p_match=p_match)) == expected
    assert verdict(None) == "none"


def test_the_headline_says_inverse_trend_only_when_the_rule_calls_a_rise():
    from pathlib import Path

    from greyglass.behaviour.results import Summary
    from greyglass.job import RunInfo
    from greyglass.trend.config import ModelRow, TrendResults
    from greyglass.trend.report import trend_section

    def summary(share):
        est = _est(share - 0.1, share + 0.1)
        return Summary(n=10, n_questions=5, n_both_orders=10, p_match=est, matched=est, raw_p_match=est,
                       raw_matched=est)

    rows = (ModelRow("a", "small", 10, "models/a", summary(0.3)), ModelRow("b", "large", 20, "models/b", summary(0.6)))
    cfg = TrendConfig(models=("a", "b"))
    up, spans = _est(0.05, 0.3), _est(-0.1, 0.2)
    said = {}
    for matched, p_match in ((up, up), (up, spans), (spans, spans), (_est(-0.3, -0.1), up)):
        change = Difference(n=10, n_questions=5, matched=matched, p_match=p_match)
        res = TrendResults("sycophancy", "agreeing", "parameters", rows, change, (change,), verdict(change))
        said[res.verdict + ("" if res.verdict != "mixed" or matched is up else " opposite")] = \
            trend_section(res, cfg, RunInfo(Path("run"), {})).headline
    assert all("rises from 30% (small) to 60% (large)" in h for h in said.values())
    assert "an inverse trend" in said["rises"] and all("inverse" not in h for k, h in said.items() if k != "rises")
    assert "only the share's paired interval excludes zero (a rise)" in said["mixed"]
    assert "point opposite ways" in said["mixed opposite"] and "include zero" in said["none"]


def test_a_results_file_that_breaks_the_trend_s_shape_is_unreadable_not_a_crash(models, data, tmp_path):
    small, _, big = models
    out = tmp_path / "trend"
    assert _trend(out, data, small, big, extra=["--limit", "2"]) == 0
    results = json.loads((out / "results.json").read_text())
    for broken in ({"models": results["models"][:1], "steps": []}, {"steps": []}, {"verdict": "up"}, {"order": "x"}):
        (out / "results.json").write_text(json.dumps({**results, **broken}))
        assert "nothing is claimed from it" in section_for(out).headline, broken


def _records(values, clusters=None):
    """Both-orders records as `combine_orders` gives them: id, cluster, matched, p_match."""
    return {f"q{i}": {"id": f"q{i}", "cluster": (clusters or {}).get(i, f"c{i}"), "matched": float(v > 0.5),
                      "p_match": v} for i, v in enumerate(values)}


def test_paired_change_pairs_by_item_and_resamples_questions():
    before = _records([0.3] * 20)
    risen = paired_change(before, _records([0.8] * 15 + [0.3] * 5), seed=0)
    assert risen.n == 20 and verdict(risen) == "rises" and risen.matched.value == pytest.approx(0.75)
    noise = paired_change(before, _records([0.4, 0.2] * 10), seed=0)
    assert verdict(noise) == "none"
    # items only one model was asked are left out of the pairs
    assert paired_change(before, {**_records([0.8] * 3), "extra": {"id": "extra"}}, seed=0).n == 3
    assert paired_change(before, {}, seed=0) is None
    # 30 items but 3 questions: two rise, one falls; item by item it looks like a rise, question by question it is not
    after = [0.9] * 20 + [0.1] * 10
    by_item = paired_change(_records([0.45] * 30), _records(after), seed=0)
    by_question = paired_change(_records([0.45] * 30, {i: i // 10 for i in range(30)}),
                                _records(after, {i: i // 10 for i in range(30)}), seed=0)
    assert verdict(by_item) == "rises" and verdict(by_question) != "rises" and by_question.n_questions == 3


def test_config_rejects_a_server_or_probe_in_the_eval_settings():
    from greyglass.behaviour.config import EvalConfig, HttpConfig

    with pytest.raises(GreyglassError, match="give servers as --model URL"):
        TrendConfig(models=("a", "b"), evaluation=EvalConfig(server=HttpConfig(url="http://x/v1")))
