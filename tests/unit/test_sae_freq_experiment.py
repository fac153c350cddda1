"""The frequency-aware experiment's mechanics at toy scale (tiny model, a few steps)."""

import json

import pytest

from greyglass import GreyglassError
from greyglass.cli import main
from greyglass.sae.freq_experiment import FreqExperimentConfig


def test_config_rejects_no_cost_and_bad_l0s():
    with pytest.raises(GreyglassError, match="freq_cost"):
        FreqExperimentConfig(freq_cost="none")
    with pytest.raises(GreyglassError, match="l0s"):
        FreqExperimentConfig(l0s=(0,))


def test_freq_experiment_command_writes_the_table(monkeypatch, tiny_llama, tmp_path, capsys):
    monkeypatch.setattr("greyglass.cli.model_from_args", lambda args: tiny_llama)  # the tiny model in place of the real one
    assert main(["sae", "freq-experiment", "--site", "blocks.1.hook_resid_post", "--l0s", "4", "--l0s", "8",
                 "--expansion", "2", "--tokens", "2048", "--batch-size", "256", "--buffer-tokens", "1024",
                 "--warmup-steps", "1", "--context-size", "32", "--eval-tokens", "256",
                 "--words", "60", "--min-letters", "1", "--no-leading-space", "--min-words-per-letter", "2",
                 "--icl-examples", "0", "--test-fraction", "0.5", "--no-progress", "--out", str(tmp_path / "run")]) == 0
    r = json.loads((tmp_path / "run" / "results.json").read_text())
    rows = r["rows"]
    assert [(x["variant"], x["target_l0"]) for x in rows] == [
        (v, l0) for l0 in (4, 8) for v in ("topk", "topk+freq", "jumprelu", "jumprelu+freq")]
    for x in rows:
        assert 0 <= x["dead_fraction"] <= 1 and x["mean_split_features"] is None or 1 <= x["mean_split_features"] <= 10
        if x["variant"].startswith("topk"):
            assert x["l0"] <= x["target_l0"] + 1e-6
    trained = [json.loads((tmp_path / "run" / "saes" / f / "training.json").read_text())["sae"]
               for f in sorted(p.name for p in (tmp_path / "run" / "saes").iterdir())]
    assert sorted(t["freq_cost"]["form"] for t in trained) == ["neglog"] * 4 + ["none"] * 4
    out = capsys.readouterr().out
    assert "| topk+freq | 4 |" in out
    # a frequency-aware TopK's folder is a plain TopK to SAELens: that encoder is reported too
    assert [x["variant"] for x in rows if "saelens_reads" in x] == ["topk+freq", "topk+freq"]
    assert all(set(x["saelens_reads"]) == {"l0", "explained_variance", "ce_increase", "kl_sae",
                                           "ce_loss_recovered_mean", "ce_loss_recovered"}
               for x in rows if "saelens_reads" in x)
    assert "topk+freq at target L0 4 as SAELens reads its folder" in out
    for x in rows:  # the cost of splicing each SAE in leads, beside CE recovered against both ablations
        assert x["kl_sae"] >= 0 and all(k in x for k in ("ce_increase", "ce_loss_recovered_mean", "ce_loss_recovered"))
    for key in ("mean_absorption_fraction", "full_absorption_rate"):  # SAEBench's headline, with letter-resampled CIs
        assert all(x[key] is None or x[key + "_ci"][0] <= x[key] <= x[key + "_ci"][1] <= 1 for x in rows)
    assert "<svg" in (tmp_path / "run" / "frontier.svg").read_text() and (tmp_path / "run" / "absorption.svg").exists()
    # each SAE's first-letter run is a ground truth the weights-only detector validates against
    first = rows[0]
    assert main(["sae", "absorption-weights", first["sae"], "--ground-truth", first["absorption_run"], "--top", "20",
                 "--out", str(tmp_path / "weights")]) == 0
    assert "validation" in json.loads((tmp_path / "weights" / "results.json").read_text())
    from greyglass.report.build import build_report

    html = build_report([tmp_path / "run"], tmp_path / "r.html").read_text()
    assert "Does making common features cheaper" in html and "comparisons at matched sparsity" in html
    assert "could not be read" not in html and html.count("<svg") >= 2
    assert f"loss +{rows[0]['ce_increase']:.3f} nats" in html and "vs mean ablation" in html
