"""`sae compare` at toy scale (tiny model, a few steps): every variant from one pass, one table, the figures;
a Matryoshka SAE's folder then goes through `sae eval` and `features build` like any other."""

import json

import pytest

from greyglass import GreyglassError
from greyglass.cli import main
from greyglass.report.build import section_for
from greyglass.sae.config import CompareConfig, SAEConfig
from greyglass.sae.io import read_training
from greyglass.sae.results import COMPARE_FIGURES


def test_config_rejects_unknown_variants_and_builds_matched_rows():
    with pytest.raises(GreyglassError, match="'gated' is not one of topk, batchtopk, matryoshka, jumprelu"):
        CompareConfig(variants=("gated",))
    rows = CompareConfig(variants=("matryoshka", "jumprelu+freq"), l0s=(8,), widths=(64, 128)).sae_configs(
        SAEConfig(d_in=16))
    assert [(v, l0, c.d_sae, c.architecture, c.freq_cost.form) for v, l0, c in rows] == [
        ("matryoshka", 8, 64, "matryoshka", "none"), ("jumprelu+freq", 8, 64, "jumprelu", "neglog"),
        ("matryoshka", 8, 128, "matryoshka", "none"), ("jumprelu+freq", 8, 128, "jumprelu", "neglog")]
    assert rows[0][2].arch.k == 8 and rows[1][2].arch.target_l0 == 8.0


def test_compare_command_writes_the_table_figures_and_section(monkeypatch, tiny_llama, tiny_llama_folder, tmp_path,
                                                             capsys):
    monkeypatch.setattr("greyglass.cli.model_from_args", lambda args: tiny_llama)  # the tiny model in place of the real one
    run = tmp_path / "run"
    assert main(["sae", "compare", "--site", "blocks.1.hook_resid_post", "--variant", "batchtopk", "--variant",
                 "matryoshka", "--variant", "jumprelu+freq", "--l0s", "4", "--width", "96", "--matryoshka-levels", "3",
                 "--tokens", "1024", "--batch-size", "256", "--buffer-tokens", "1024", "--warmup-steps", "1",
                 "--context-size", "32", "--eval-tokens", "256", "--seed", "1", "--words", "60", "--min-letters", "1",
                 "--no-leading-space", "--min-words-per-letter", "2", "--icl-examples", "0", "--test-fraction", "0.5",
                 "--task", "cities", "--task", "language", "--probe-k", "1", "--probe-k", "5", "--examples", "40",
                 "--no-progress", "--out", str(run)]) == 0
    printed = capsys.readouterr().out
    assert section_for(run).summary() in printed  # the terminal says what the report says
    r = json.loads((run / "results.json").read_text())
    assert [(x["variant"], x["d_sae"], x["target_l0"]) for x in r["rows"]] == [
        ("batchtopk", 96, 4), ("matryoshka", 96, 4), ("jumprelu+freq", 96, 4)]
    for x in r["rows"]:
        assert x["metrics"]["heldout"]["verified"] and 0 <= x["metrics"]["dead_fraction"] <= 1
        assert [t["task"] for t in x["sparse_probing"]["tasks"]] == ["cities", "language"]
        assert all(0 <= s["accuracy"]["ci_low"] < s["accuracy"]["ci_high"] <= 1
                   for t in x["sparse_probing"]["tasks"] for s in t["sparse"])
        assert json.loads((run / x["absorption_run"] / "config.json").read_text())["kind"] == "sae_absorption"
    # the raw probe reads the same activations for every SAE: the same accuracy in every row
    assert len({json.dumps(x["sparse_probing"]["tasks"][0]["raw"]) for x in r["rows"]}) == 1
    matryoshka = run / r["rows"][1]["sae"]
    assert read_training(matryoshka)["sae"]["arch"]["widths"] == [] and read_training(matryoshka)["sae"]["arch"]["levels"] == 3
    table = (run / "table.md").read_text()
    assert "| matryoshka | 96 | 4 |" in table and "top-5 probe" in table and "cities raw" in table
    for name in COMPARE_FIGURES:
        assert "<svg" in (run / name).read_text()
    # the Matryoshka folder (a JumpReLU to SAELens and to greyglass) is read by the other commands
    model = tiny_llama_folder
    assert main(["sae", "eval", str(matryoshka), "--model", str(model), "--tokens", "200", "--batch-windows", "4",
                 "--out", str(tmp_path / "eval"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["metrics"]["heldout"]["verified"]
    assert main(["features", "build", str(matryoshka), "--model", str(model), "--tokens", "1000", "--context-size", "32",
                 "--top-k", "4", "--n-samples", "4", "--window", "3", "--no-progress"]) == 0
    assert (matryoshka / "features" / "results.json").is_file()


def test_calibrate_evaluates_the_calibrated_sae_and_leaves_topk_alone(monkeypatch, tiny_llama, tmp_path, capsys):
    monkeypatch.setattr("greyglass.cli.model_from_args", lambda args: tiny_llama)
    run = tmp_path / "run"
    assert main(["sae", "compare", "--site", "blocks.1.hook_resid_post", "--variant", "topk", "--variant", "batchtopk",
                 "--l0s", "4", "--width", "64", "--tokens", "512", "--batch-size", "256", "--buffer-tokens", "512",
                 "--warmup-steps", "1", "--context-size", "32", "--eval-tokens", "256", "--words", "40",
                 "--min-letters", "1", "--no-leading-space", "--min-words-per-letter", "2", "--icl-examples", "0",
                 "--task", "cities", "--probe-k", "1", "--examples", "20", "--calibrate", "--no-progress",
                 "--out", str(run)]) == 0
    topk, batchtopk = json.loads((run / "results.json").read_text())["rows"]
    assert topk["calibration"] is None and not topk["sae"].endswith("-calibrated")
    c = batchtopk["calibration"]
    assert batchtopk["sae"].endswith("batchtopk-64-k4-blocks.1.hook_resid_post-calibrated")
    assert c["target_l0"] == 4.0 and abs(c["l0_after"] - 4.0) < 0.01 and c["rows"] >= 256
    # calibrated on held-out text after the windows evaluated, measured on those: near the target, not on it
    assert c["first_window"] > 0  # which windows: test_sae_calibrate
    assert abs(batchtopk["metrics"]["l0"] - 4.0) < 1.5
    assert read_training(run / batchtopk["sae"])["calibration"]["shift"] == pytest.approx(c["shift"])
    assert (run / batchtopk["sae"].removesuffix("-calibrated")).is_dir()  # the trained SAE is kept
    assert "thresholds calibrated to L0 4 (variant)" in capsys.readouterr().out
