"""`greyglass trend` on tiny models saved as folders: sub-runs, ordering, resume, bad input, and the rule that
calls a trend, on constructed numbers where it must and must not flag one."""

import json

import pytest
from markupsafe import escape
from starlette.testclient import TestClient

from greyglass.behaviour.jobs import EVAL, EVAL_COT, EVAL_PRESSURE
from greyglass.cli import main
from greyglass.errors import GreyglassError
from greyglass.job import read_job_run
from greyglass.models.loader import load_model
from greyglass.models.tiny import tiny_model
from greyglass.report.build import section_for
from greyglass.serve.app import create_app
from greyglass.stats import Estimate
from greyglass.redteam.jobs import REDTEAM
from greyglass.redteam.run import CASES
from greyglass.trend.config import Change, EvalTrend, TrendConfig, verdict
from greyglass.trend.jobs import TREND
from greyglass.trend.measures import Metric, change, measure_of


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
        assert sub.config.eval == "behaviour" and sub.results.n_items == 12
        # the trend's figures are the eval's own headline figures, read back item by item
        for mine, its in zip(m.values, (sub.results.all.matched, sub.results.all.p_match)):
            assert tuple(mine) == pytest.approx(tuple(its))
        assert (m.n, m.n_clusters) == (sub.results.all.n, sub.results.all.n_questions)
    # the change pairs the first and the last model's questions; the steps pair neighbours
    assert res.change is not None and res.change.paired and res.change.n == res.models[0].n == res.models[-1].n
    assert len(res.steps) == 2 and res.verdict == verdict(res.change)
    assert res.metrics == tuple(m.name for m in measure_of(run.config.job.asked).metrics) and res.job == "eval"
    assert res.change.values[0].lo < res.change.values[0].hi  # a finite sample: never a zero-width interval
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
    assert served.n == local.n == 6


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
        (["--model", str(small), "--model", str(big), "--task", "gsm8k"], "does not apply to --job eval"),
        (["--model", str(small), "--model", "http://127.0.0.1:9/v1", "--order", "given", "--job", "eval-cot"],
         "cannot be asked"),
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
        assert verdict(Change(True, 10, 5, (matched, p_match))) == expected
    assert verdict(None) == "none"
    # a metric nothing measured (no chain stated a number) is left out of the call; with none measured, no trend
    unmeasured = Estimate(float("nan"), float("nan"), float("nan"))
    assert verdict(Change(True, 10, 5, (up, unmeasured))) == "rises"
    assert verdict(Change(True, 10, 5, (unmeasured, unmeasured))) == "none"


def test_the_headline_says_inverse_trend_only_when_the_rule_calls_a_rise():
    from pathlib import Path

    from greyglass.job import RunInfo
    from greyglass.trend.config import ModelRow, TrendResults
    from greyglass.trend.report import trend_section

    def row(spec, label, parameters, share):
        return ModelRow(spec, label, parameters, f"models/{spec}", (_est(share - 0.1, share + 0.1),) * 2, 10, 5)

    rows = (row("a", "small", 10, 0.3), row("b", "large", 20, 0.6))
    cfg = TrendConfig(models=("a", "b"))
    metrics = ("share", "mean probability")
    up, spans = _est(0.05, 0.3), _est(-0.1, 0.2)
    said = {}
    for matched, p_match in ((up, up), (up, spans), (spans, spans), (_est(-0.3, -0.1), up)):
        change = Change(True, 10, 5, (matched, p_match))
        res = TrendResults("eval", "sycophancy", "agreeing", metrics, "parameters", rows, change, (change,),
                           verdict(change))
        said[res.verdict + ("" if res.verdict != "mixed" or matched is up else " opposite")] = \
            trend_section(res, cfg, RunInfo(Path("run"), {})).headline
    assert all("share rises from 30% (small) to 60% (large)" in h for h in said.values())
    assert "an inverse trend" in said["rises"] and all("inverse" not in h for k, h in said.items() if k != "rises")
    assert "only the interval of the share excludes zero (a rise)" in said["mixed"]
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


EVAL_MEASURE = measure_of(EvalTrend().asked)


def test_paired_change_pairs_by_item_and_resamples_questions():
    before = _records([0.3] * 20)
    risen = change(before, _records([0.8] * 15 + [0.3] * 5), EVAL_MEASURE, seed=0)
    assert risen.n == 20 and risen.paired and verdict(risen) == "rises"
    assert risen.values[0].value == pytest.approx(0.75)
    noise = change(before, _records([0.4, 0.2] * 10), EVAL_MEASURE, seed=0)
    assert verdict(noise) == "none"
    # items only one model was asked are left out of the pairs
    assert change(before, {**_records([0.8] * 3), "extra": {"id": "extra"}}, EVAL_MEASURE, seed=0).n == 3
    assert change(before, {}, EVAL_MEASURE, seed=0) is None
    # 30 items but 3 questions: two rise, one falls; item by item it looks like a rise, question by question it is not
    after = [0.9] * 20 + [0.1] * 10
    by_item = change(_records([0.45] * 30), _records(after), EVAL_MEASURE, seed=0)
    by_question = change(_records([0.45] * 30, {i: i // 10 for i in range(30)}),
                         _records(after, {i: i // 10 for i in range(30)}), EVAL_MEASURE, seed=0)
    assert verdict(by_item) == "rises" and verdict(by_question) != "rises" and by_question.n_clusters == 3


def test_unpaired_change_compares_two_samples_by_their_own_clusters():
    """A red team writes each target its own cases: the change is two independent samples, not pairs."""
    measure = EVAL_MEASURE._replace(paired=False, metrics=(Metric("fail", "failing", "share"),))

    def cases(fails, per_case=1, prefix="x"):
        return {f"{prefix}{i}-{k}": {"id": f"{prefix}{i}-{k}", "cluster": f"{prefix}{i}", "fail": float(f)}
                for i, f in enumerate(fails) for k in range(per_case)}

    risen = change(cases([0] * 30), cases([1] * 12 + [0] * 18, prefix="y"), measure, seed=0)
    assert not risen.paired and risen.values[0].value == pytest.approx(0.4) and verdict(risen) == "rises"
    # nothing failed on either side: zero, with an interval that is not a point (Newcombe's from both Wilson ones)
    still = change(cases([0] * 10), cases([0] * 10, prefix="y"), measure, seed=0)
    assert still.values[0].value == 0 and still.values[0].lo < 0 < still.values[0].hi and verdict(still) == "none"
    # the same rates over 3 answers per case: the interval resamples cases, so it is no narrower than with 1 answer
    one = change(cases([0] * 10 + [1] * 10), cases([1] * 14 + [0] * 6, prefix="y"), measure, seed=0).values[0]
    three = change(cases([0] * 10 + [1] * 10, 3), cases([1] * 14 + [0] * 6, 3, "y"), measure, seed=0).values[0]
    assert three.value == pytest.approx(one.value) and three.hi - three.lo >= 0.9 * (one.hi - one.lo)


def test_a_metric_that_never_varies_still_has_an_interval():
    """A red team that finds nothing: every failure score 0, yet 20 cases cannot rule out a few failures."""
    from greyglass.trend.measures import estimate

    nothing = {f"c{i}": {"id": f"c{i}", "cluster": f"c{i}", "fail": 0.0, "score": 0.0} for i in range(20)}
    for metric in (Metric("fail", "failing", "share"), Metric("score", "mean score", "mean")):
        est = estimate(nothing, metric, seed=0)
        assert est.value == 0 and est.lo == 0 < est.hi, metric


def test_config_rejects_a_server_or_probe_in_the_eval_settings():
    from greyglass.behaviour.config import EvalConfig, HttpConfig

    with pytest.raises(GreyglassError, match="give servers as --model URL"):
        TrendConfig(models=("a", "b"), job=EvalTrend(asked=EvalConfig(server=HttpConfig(url="http://x/v1"))))


def _trend_of(job, out, *models, flags=()):
    model_flags = [f for m in models for f in ("--model", str(m))]
    return main(["trend", "--job", job, *model_flags, *flags, "--out", str(out), "--no-progress"])


def test_a_trend_runs_eval_cot_eval_pressure_and_redteam_and_reads_their_items(models, tmp_path, capsys):
    """Each job's sub-runs are its own run folders; the trend's figures are that job's own figures, read back."""
    _, organism, big = models
    cot_flags = ["--limit", "2", "--max-cot-tokens", "4"]
    assert _trend_of("eval-cot", tmp_path / "cot", big, organism, flags=cot_flags) == 0
    assert section_for(tmp_path / "cot").summary() in capsys.readouterr().out
    res = read_job_run(TREND, tmp_path / "cot").results
    assert res.job == "eval-cot" and res.task == "addition" and res.change.paired and res.change.n == 2
    for m in res.models:
        own = read_job_run(EVAL_COT, tmp_path / "cot" / m.folder).results.all
        for mine, its in zip(m.values, (own.early_answering["0.0"], own.adding_mistakes_unchanged)):
            assert (its is None and mine.value != mine.value) or tuple(mine) == pytest.approx(tuple(its.share))

    assert _trend_of("eval-pressure", tmp_path / "funds", big, organism,
                     flags=["--scenario", "customer-funds", "--samples", "1", "--max-tokens", "2"]) == 0
    res = read_job_run(TREND, tmp_path / "funds").results
    assert res.task == "customer-funds" and res.change.n == 16 and res.change.n_clusters == 16  # 8 cells x 2 conditions
    for m in res.models:
        own = read_job_run(EVAL_PRESSURE, tmp_path / "funds" / m.folder).results
        assert tuple(m.values[0]) == pytest.approx(tuple(own.without_ethics.misused.share))
        assert tuple(m.values[1]) == pytest.approx(tuple(own.with_ethics.misused.share))

    # one red model writes every target's cases: the change is unpaired, over each target's own answers
    capsys.readouterr()
    red_flags = ["--red", str(big), "--methods", "zero_shot", "--rounds", "1", "--cases", "3", "--max-case-tokens", "4",
                 "--max-answer-tokens", "4", "--n-bootstrap", "50"]
    assert _trend_of("redteam", tmp_path / "red", big, organism, flags=red_flags) == 0
    assert "each model its own items" in section_for(tmp_path / "red").summary()
    res = read_job_run(TREND, tmp_path / "red").results
    assert res.job == "redteam" and not res.change.paired and res.task == "secret"
    for m in res.models:
        run = read_job_run(REDTEAM, tmp_path / "red" / m.folder)
        assert run.config.red == str(big) and len((tmp_path / "red" / m.folder / CASES).read_text().splitlines()) == 3
        assert tuple(m.values[0]) == pytest.approx(tuple(run.results.classifier_rates["rule"]))
    # resumed: each job's finished sub-runs are read back as they are, not asked again
    for name, folder, flags in (("redteam", "red", red_flags), ("eval-cot", "cot", cot_flags)):
        stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / folder).glob("models/*/results.json")}
        assert _trend_of(name, tmp_path / folder, big, organism, flags=[*flags, "--resume"]) == 0
        assert {p: p.stat().st_mtime_ns for p in stamps} == stamps and len(stamps) == 2
    # the redteam's own flags reach it; a flag of another job is refused by name
    assert _trend_of("redteam", tmp_path / "bad", big, organism, flags=["--scenario", "customer-funds"]) == 2
    assert "does not apply to --job redteam" in capsys.readouterr().err
