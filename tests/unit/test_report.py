"""The evidence report from real (tiny-model) run folders."""

import json
from html.parser import HTMLParser

import pytest

from greyglass import GreyglassError
from greyglass.cli import main
from greyglass.report.build import build_report, find_runs, section_for
from greyglass.runs import write_config, write_results


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.urls = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href") and v and not v.startswith("#")]


def _parse(html: str) -> _Collect:
    p = _Collect()
    p.feed(html)
    return p


@pytest.fixture
def runs(tmp_path, tiny_llama):
    from greyglass.data import CorpusConfig
    from greyglass.job import RunOptions
    from greyglass.store.config import CaptureConfig, CaptureRunConfig
    from greyglass.store.jobs import CAPTURE

    cap = tmp_path / "capture" / "a"
    cfg = CaptureRunConfig(CaptureConfig(sites=("resid_post.1",), tokens=300), CorpusConfig(context_size=16))
    CAPTURE.run(tiny_llama, cfg, cap, RunOptions(progress=False))
    other = tmp_path / "mystery" / "b"
    write_config(other, "mystery", model=tiny_llama.provenance())
    write_results(other, {"score": 0.25, "nested": {"x": 1}})
    return tmp_path


def test_report_is_self_contained_and_has_every_section(runs, tmp_path):
    out = build_report([runs], tmp_path / "r.html")
    html = out.read_text()
    parsed = _parse(html)
    assert "script" not in parsed.tags and parsed.urls == []
    assert "http://" not in html and "https://" not in html
    assert "300 tokens" in html and "blocks.1.hook_resid_post" in html
    assert "no plain-language reading for &#39;mystery&#39; runs yet" in html
    assert html.count("<section") == 3  # capture, mystery, glossary
    assert "What it does not show" in html and "<summary>AUROC</summary>" in html


def test_find_runs_and_errors(runs, tmp_path, capsys):
    assert [p.name for p in find_runs([runs])] == ["a", "b"]
    with pytest.raises(GreyglassError, match="does not exist"):
        find_runs([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "x.html")]) == 2
    assert "no run folders" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()
    assert main(["report", str(runs / "capture"), "--out", str(tmp_path / "y.html")]) == 0
    assert "report written to" in capsys.readouterr().out


def test_sae_section_from_a_real_evaluation(tmp_path, tiny_llama):
    from greyglass.sae.architectures import create_sae
    from greyglass.sae.config import MetricsConfig, MetricsRunConfig, SAEConfig, TopKConfig
    from greyglass.sae.metrics import evaluate
    from greyglass.sae.results import MetricsResults

    cfg = SAEConfig(arch=TopKConfig(k=8), d_in=64, d_sae=256, hook_name="blocks.1.hook_resid_post",
                    context_size=16)
    sae = create_sae(cfg)
    metrics = evaluate(sae, tiny_llama, MetricsConfig(tokens=200), progress=False)
    run = tmp_path / "sae_eval" / "x"
    write_config(run, "sae_eval", config=MetricsRunConfig(sae="an-sae"), model=tiny_llama.provenance())
    write_results(run, MetricsResults(metrics, None, 1.0))
    html = build_report([run], tmp_path / "r.html").read_text()
    # the headline leads with how much worse the model predicts, not with CE recovered
    assert f"loss up {metrics.ce_increase.value:.2f} nats per token" in html and "blocks.1.hook_resid_post" in html
    assert f"{metrics.ce_loss_recovered_mean:.1%} vs mean ablation" in html
    assert "not shown to be held out" in html  # evaluated without checking the SAE's training text
    assert "could not be read" not in html


def test_a_run_with_missing_fields_gets_a_section_not_a_crash(tmp_path, capsys):
    from greyglass.sae.config import MetricsRunConfig

    run = tmp_path / "bad"
    write_config(run, "sae_eval", config=MetricsRunConfig(sae="an-sae"))
    write_results(run, {"metrics": {"ce_loss_recovered": 0.8}})  # the other metrics are missing
    html = build_report([run], tmp_path / "r.html").read_text()
    assert "could not be read" in html and "results.json: metrics: the field &#39;site&#39; is missing" in html
    assert "warning" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["sycophancy", "advanced-ai-risk"])
def test_eval_sections_from_real_runs(tmp_path, name):
    from greyglass.behaviour.config import EvalConfig
    from greyglass.behaviour.local import LocalBackend
    from greyglass.behaviour.run import run_eval
    from greyglass.models.tiny import tiny_model

    run = tmp_path / name
    results = run_eval(LocalBackend(tiny_model("llama", chat=True)), EvalConfig(eval=name, limit=8, batch_size=4),
                       run, progress=False)
    html = build_report([run], tmp_path / "r.html").read_text()
    assert "could not be read" not in html
    part = results.all  # sycophancy: asked with the biography
    claims = "sides with the user&#39;s stated view more often than chance" in html or "more than chance." in html
    above = part.matched.lo > 0.5 and (name != "sycophancy" or part.p_match.lo > 0.5)
    assert claims == above  # a claim only when the intervals exclude chance
    assert "135-270 million parameters" in html


def test_probe_lying_and_steering_sections_from_real_runs(tmp_path, tiny_llama):
    from greyglass.probes.config import LyingConfig, SweepConfig
    from greyglass.probes.lying import localise_lying
    from greyglass.probes.sweep import sweep
    from greyglass.steer.config import EffectConfig
    from greyglass.steer.effect import steering_effect

    swept = sweep(tiny_llama, SweepConfig(data="cities", n_statements=40, layer_step=2, n_bootstrap=50),
                  tmp_path / "sweep", progress=False)
    lying = localise_lying(tiny_llama, LyingConfig(n_questions=4, head_layers=1), tmp_path / "lying",
                           progress=False)
    steering_effect(tiny_llama, EffectConfig(behavior="refusal", layer=1, coefs=(-1.0, 0.0, 1.0), n_build=4, n_test=4),
                    tmp_path / "effect", progress=False)
    html = build_report([tmp_path], tmp_path / "r.html").read_text()
    assert "could not be read" not in html and "no plain-language reading" not in html
    majority = max(swept.true_fraction, 1 - swept.true_fraction)
    assert ("A simple linear probe reads" in html) == (swept.best.accuracy.lo > majority)
    assert ("there is no lie to locate" in html) == (not lying.model_lies)
    assert "Can we push the model towards &#39;refusal&#39;?" in html
    assert html.count("<svg") >= 2 and "<script" not in html  # the sweep and effect plots are inlined


def test_cot_and_pressure_sections_from_real_runs(tmp_path):
    from greyglass.behaviour.config import CotConfig, PressureConfig
    from greyglass.behaviour.cot import run_cot
    from greyglass.behaviour.pressure import run_pressure
    from greyglass.models.tiny import tiny_model

    lm = tiny_model("llama", chat=True)
    run_cot(lm, CotConfig(limit=2, max_cot_tokens=8), tmp_path / "cot", progress=False)
    run_pressure(lm, PressureConfig(samples=2, max_tokens=8), tmp_path / "pressure", progress=False)
    html = build_report([tmp_path], tmp_path / "r.html").read_text()
    assert "Does the model&#39;s written reasoning produce its answer?" in html and "Scenario: " in html
    assert "could not be read" not in html and "no plain-language reading" not in html


@pytest.mark.parametrize("probe_f1, k_sparse_f1, rate, says", [
    (0.4, 0.9, 0.20, "too weak"),           # the model itself barely encodes first letters here
    (0.9, 0.18, 0.00, "no clean"),          # no letter features: a 0% rate would mislead
    (0.9, 0.80, 0.05, "is present"),
    (0.9, 0.80, 0.00, "little feature absorption"),
    (0.9, 0.80, 0.02, "little feature absorption"),  # an interval reaching down to 1%: no absorption claimed
])
def test_absorption_headline_rules(tmp_path, probe_f1, k_sparse_f1, rate, says):
    from greyglass.job import RunInfo
    from greyglass.sae.config import AbsorptionRunConfig
    from greyglass.sae.report import absorption_section
    from greyglass.sae.results import AbsorptionHeadline, AbsorptionResults
    from greyglass.stats import Estimate

    headline = AbsorptionHeadline(letters_scored=20, probe_right_words=300, mean_probe_f1=probe_f1,
                                  mean_k_sparse_f1=k_sparse_f1, mean_absorption_fraction=Estimate(rate, rate / 2, rate * 2),
                                  full_absorption_rate=Estimate(rate / 2, 0.0, rate),
                                  mean_split_features=Estimate(1.5, 1.2, 1.8))
    res = AbsorptionResults("blocks.4.hook_resid_post", 400, (), {}, (), headline)
    assert says in absorption_section(res, AbsorptionRunConfig(sae="s"), RunInfo(tmp_path, {})).headline


def test_a_run_an_older_greyglass_wrote_says_so_and_how_to_refresh_it(tmp_path, capsys):
    from serve_runs import write_old_sweep

    from greyglass.probes.config import SweepConfig
    from greyglass.runs import LAYOUT

    old = write_old_sweep(tmp_path / "runs" / "old")
    html = build_report([old], tmp_path / "r.html").read_text()
    said = "written by greyglass 0.1.0 (older results layout); re-run `greyglass probe sweep --data cities` to refresh it"
    assert said in html and said in capsys.readouterr().err
    assert "could not be read" not in html and "the field" not in html and "unknown key" not in html
    # without a recorded command line, the command of its run kind
    bare = write_old_sweep(tmp_path / "runs" / "bare", command=None)
    assert "re-run `greyglass probe sweep` to refresh it" in section_for(bare).headline
    # a folder from a newer greyglass says that instead
    new = tmp_path / "runs" / "new"
    write_config(new, "probe_sweep", config=SweepConfig())
    meta = json.loads((new / "config.json").read_text())
    assert meta["layout"] == LAYOUT  # every run folder records its layout
    (new / "config.json").write_text(json.dumps({**meta, "layout": LAYOUT + 1}))
    write_results(new, {})
    assert f"newer results layout {LAYOUT + 1}" in section_for(new).headline
    # a folder written with typed results before config.json recorded its layout is read as layout 2
    (new / "config.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "layout"}))
    assert "could not be read" in section_for(new).title  # its empty results.json, not its layout, is the problem
