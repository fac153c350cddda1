"""The frequency-aware experiment's mechanics at toy scale (tiny model, a few steps)."""

import json

import pytest

from greyglass import GreyglassError
from greyglass.cli import main
from greyglass.report.build import section_for
from greyglass.sae.config import FreqExperimentConfig


def test_config_rejects_no_cost_and_bad_l0s():
    with pytest.raises(GreyglassError, match="freq_cost"):
        FreqExperimentConfig(freq_cost="none")
    with pytest.raises(GreyglassError, match="l0s"):
        FreqExperimentConfig(l0s=(0,))


def test_freq_experiment_command_writes_the_table(monkeypatch, tiny_llama, tmp_path, capsys):
    monkeypatch.setattr("greyglass.cli.model_from_args", lambda args: tiny_llama)  # the tiny model in place of the real one
    run = tmp_path / "run"
    assert main(["sae", "freq-experiment", "--site", "blocks.1.hook_resid_post", "--l0s", "4", "--l0s", "8",
                 "--expansion", "2", "--tokens", "2048", "--batch-size", "256", "--buffer-tokens", "1024",
                 "--warmup-steps", "1", "--context-size", "32", "--eval-tokens", "256", "--seed", "1",
                 "--words", "60", "--min-letters", "1", "--no-leading-space", "--min-words-per-letter", "2",
                 "--icl-examples", "0", "--test-fraction", "0.5", "--no-progress", "--out", str(run)]) == 0
    printed = capsys.readouterr().out
    assert section_for(run).summary() in printed  # the terminal says what the report says
    r = json.loads((run / "results.json").read_text())
    rows = r["rows"]
    assert [(x["variant"], x["target_l0"]) for x in rows] == [
        (v, l0) for l0 in (4, 8) for v in ("topk", "topk+freq", "jumprelu", "jumprelu+freq")]
    for x in rows:
        split = x["absorption"]["mean_split_features"]
        assert 0 <= x["metrics"]["dead_fraction"] <= 1 and (split is None or 1 <= split["value"] <= 10)
        if x["variant"].startswith("topk"):
            assert x["metrics"]["l0"] <= x["target_l0"] + 1e-6
    trained = [json.loads((run / "saes" / f / "training.json").read_text())["sae"]
               for f in sorted(p.name for p in (run / "saes").iterdir())]
    assert sorted(t["freq_cost"]["form"] for t in trained) == ["neglog"] * 4 + ["none"] * 4
    table = (run / "table.md").read_text()
    assert table == section_for(run).markdown()  # table.md is the report section, not a second phrasing of it
    assert "| topk+freq | 4 |" in table and "topk+freq at target L0 4, as SAELens reads its folder" in table
    # a frequency-aware TopK's folder is a plain TopK to SAELens: that encoder is reported too
    assert [x["variant"] for x in rows if x["saelens_reads"]] == ["topk+freq", "topk+freq"]
    assert "topk+freq at target L0 4, as SAELens reads its folder" in printed
    assert all(x["metrics"]["kl_sae"]["value"] >= 0 and x["metrics"]["heldout"]["verified"] for x in rows)
    for key in ("mean_absorption_fraction", "full_absorption_rate"):  # SAEBench's headline, with letter-resampled CIs
        assert all(x["absorption"][key] is None or
                   x["absorption"][key]["ci_low"] <= x["absorption"][key]["value"] <= x["absorption"][key]["ci_high"] <= 1
                   for x in rows)
    assert "<svg" in (run / "frontier.svg").read_text() and (run / "absorption.svg").exists()
    # one seed for everything: the corpus order and the first-letter benchmark follow --seed
    first_letter = json.loads((run / rows[0]["absorption_run"] / "config.json").read_text())
    assert first_letter["kind"] == "sae_absorption" and first_letter["config"]["absorption"]["seed"] == 1
    assert json.loads((run / "config.json").read_text())["config"]["train"]["seed"] == 1
    # each SAE's first-letter run is a ground truth the weights-only detector validates against
    first = rows[0]
    assert main(["sae", "absorption-weights", str(run / first["sae"]), "--ground-truth", str(run / first["absorption_run"]),
                 "--top", "20", "--out", str(tmp_path / "weights")]) == 0
    assert json.loads((tmp_path / "weights" / "results.json").read_text())["validation"]
    from greyglass.report.build import build_report

    html = build_report([run], tmp_path / "r.html").read_text()
    assert "Does making common features cheaper" in html and "comparisons at matched sparsity" in html
    assert "could not be read" not in html and html.count("<svg") >= 2
    assert f"<td>{rows[0]['metrics']['ce_increase']['value']:.3f} (" in html and "vs mean / zero ablation" in html
