"""Absorption tools on the real default model: the first-letter benchmark end to end through the
CLI (a random SAE: the mechanics, not a finding), the weights-only detector validated on it."""

import json

import pytest

from greyglass.cli import main
from greyglass.report.build import section_for
from greyglass.sae.absorption import first_letter_prompts, vocab_words
from greyglass.sae.architectures import create_sae
from greyglass.sae.config import AbsorptionConfig, SAEConfig, TopKConfig
from greyglass.sae.io import save_sae

SITE = "blocks.15.hook_resid_post"


def test_prompts_hold_whole_words_at_a_known_position(smollm):
    tok = smollm.tokenizer
    words = vocab_words(tok, 50, seed=1)
    assert len(words) == 50 and all(w.text.startswith(" ") and w.text[1:].isalpha() for w in words)
    prompts, rest = first_letter_prompts(tok, words, AbsorptionConfig().template, icl_examples=2)
    ex = prompts.examples
    for row, w in zip(prompts.ids[:5], rest[:5]):
        assert int(row[prompts.position]) == w.token
        assert tok.decode(row, skip_special_tokens=True) == (
            f"{ex[0].text} has the first letter: {ex[0].letter.upper()}\n"
            f"{ex[1].text} has the first letter: {ex[1].letter.upper()}\n"
            f"{w.text} has the first letter:")
        assert tok.decode(row[prompts.position - 1: prompts.position + 1]).endswith(w.text)


def test_first_letter_benchmark_and_detector_on_the_real_model(smollm, tmp_path, capsys):
    sae = create_sae(SAEConfig(d_in=576, d_sae=1152, arch=TopKConfig(k=32), hook_name=SITE, model_name=smollm.spec,
                               norm_scale=0.1), seed=0)
    save_sae(sae, tmp_path / "sae")
    assert main(["sae", "absorption", str(tmp_path / "sae"), "--words", "300", "--min-words-per-letter", "8",
                 "--no-progress", "--out", str(tmp_path / "run")]) == 0
    r = json.loads((tmp_path / "run" / "results.json").read_text())
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["sha256"]  # the SAE's own model
    assert r["n_words"] == 300 and len(r["letters"]) >= 10
    # the model's activations know first letters well above chance (a letter is ~5% of words)
    assert r["headline"]["mean_probe_f1"] > 0.3
    for letter, v in r["letters"].items():
        assert 1 <= len(v["main_latents"]) == v["split_features"] <= 10
        assert v["probe_right"] <= v["test_words"] < v["words"]  # only held-out words are scored
        assert v["mean_absorption_fraction"] is None or 0 <= v["mean_absorption_fraction"] <= 1
        assert v["full_absorbed"] == sum(a["words"] for a in r["absorbing_latents"] if a["letter"] == letter)
    scored = [v for v in r["letters"].values() if v["scored"]]
    assert r["headline"]["letters_scored"] == len(scored) and all(v["probe_f1"] > 0.6 for v in scored)
    assert section_for(tmp_path / "run").summary() in capsys.readouterr().out
    assert main(["sae", "absorption-weights", str(tmp_path / "sae"), "--top", "100", "--block", "256",
                 "--ground-truth", str(tmp_path / "run"), "--out", str(tmp_path / "w")]) == 0
    v = json.loads((tmp_path / "w" / "results.json").read_text())["validation"]
    assert v["candidate_pairs"] == 1152 * len({m for x in r["letters"].values() for m in x["main_latents"]})
    auroc = v["auroc"]["value"]
    assert auroc != auroc or 0 <= auroc <= 1  # NaN when nothing was absorbed


@pytest.mark.slow
def test_demo_step_writes_absorption_detector_and_meta_runs(smollm, tmp_path, capsys):
    from greyglass.demo import demo_runs, run_demo

    sae = create_sae(SAEConfig(d_in=576, d_sae=1152, arch=TopKConfig(k=32), hook_name=SITE, model_name=smollm.spec,
                               norm_scale=0.1), seed=0)
    save_sae(sae, tmp_path / "sae" / "sae")  # where the demo's training step puts its SAE
    steps = [r for r in demo_runs(tmp_path, smollm.n_layers, 500) if r.name in ("absorption", "absorption_weights", "meta")]
    assert len(steps) == 3
    run_demo(smollm, tmp_path, steps)
    out = capsys.readouterr().out
    runs = [tmp_path / name for name in ("absorption", "absorption_weights", "meta")]
    assert all(section_for(run).summary() in out for run in runs)
    assert "72 meta-features explain" in out or "72 'meta-features' explain" in out
    assert json.loads((tmp_path / "absorption_weights" / "results.json").read_text())["validation"]["candidate_pairs"] > 0
    from greyglass.report.build import build_report

    html = build_report(runs, tmp_path / "r.html").read_text()
    assert "Do the SAE&#39;s features quietly miss cases?" in html and "Are the SAE&#39;s features made of smaller parts?" in html
    assert "Do the SAE&#39;s weights show which features absorb others?" in html
    assert "could not be read" not in html
    assert json.loads((tmp_path / "meta" / "results.json").read_text())["meta"][0]["members"][0]["tokens"]
