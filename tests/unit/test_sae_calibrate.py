"""Threshold calibration: one shift on every threshold brings the mean L0 on the given rows to the target,
the same shift a naive search finds; the rows are held-out text that evaluation does not read; the calibrated
SAE saves as a JumpReLU folder that says what was done; `greyglass sae calibrate` does it to a folder on the
model's own text."""

import json

import pytest
import torch

from greyglass import GreyglassError
from greyglass.activations import model_windows
from greyglass.cli import main
from greyglass.data.corpus import CorpusConfig
from greyglass.report.build import section_for
from greyglass.sae.architectures import create_sae
from greyglass.sae.calibrate import calibrate_l0, calibration_rows, calibration_target, save_calibrated
from greyglass.sae.config import (BatchTopKConfig, FreqCostConfig, JumpReLUConfig, MatryoshkaConfig, MetricsConfig,
                                  SAEConfig, TopKConfig)
from greyglass.sae.io import load_sae, read_training, save_sae
from greyglass.sae.metrics import _eval_windows

D_IN, D_SAE, ROWS = 16, 96, 400


def _rows(seed: int = 0) -> torch.Tensor:
    return torch.randn(ROWS, D_IN, generator=torch.Generator().manual_seed(seed))


def _batchtopk(threshold: float, **cfg) -> torch.nn.Module:
    sae = create_sae(SAEConfig(d_in=D_IN, d_sae=D_SAE, arch=BatchTopKConfig(k=8), **cfg), seed=1).eval()
    sae.threshold.fill_(threshold)  # as training would have left it
    return sae


def _jumprelu() -> torch.nn.Module:
    sae = create_sae(SAEConfig(d_in=D_IN, d_sae=D_SAE, arch=JumpReLUConfig(target_l0=8.0)), seed=2).eval()
    with torch.no_grad():  # unequal per-latent thresholds, some near zero so the clamp matters for negative shifts
        sae.threshold.copy_(torch.rand(D_SAE, generator=torch.Generator().manual_seed(3)) * 0.6)
    return sae


@torch.no_grad()
def _l0(sae, x: torch.Tensor) -> float:
    return float((sae.encode(x) > 0).sum(-1).float().mean())


@torch.no_grad()
def _naive_shift(sae, x: torch.Tensor, target: float) -> float:
    """Bisection on the shift, re-encoding at each step: the slow definition of what calibration finds."""
    flat = sae.folded()
    base = flat.threshold.clone()
    lo, hi = -float(base.max()) - 1.0, 10.0
    for _ in range(60):
        mid = (lo + hi) / 2
        flat.threshold.copy_((base + mid).clamp(min=0.0))
        lo, hi = (mid, hi) if _l0(flat, x) > target else (lo, mid)
    return hi


@pytest.mark.parametrize("make, target", [(lambda: _batchtopk(0.05), 8.0),  # fires too much: shift up
                                          (lambda: _batchtopk(0.9), 8.0),  # too little: shift down
                                          (_jumprelu, 8.0), (_jumprelu, 30.0)])
def test_calibration_hits_the_target_with_the_shift_a_naive_search_finds(make, target):
    sae, x = make(), _rows()
    before = _l0(sae, x)
    out = calibrate_l0(sae, x, target)
    c = out.calibration
    assert c.l0_before == pytest.approx(before) and c.rows == ROWS
    assert abs(_l0(out.sae, x) - target) <= 1 / ROWS and c.l0_after == pytest.approx(_l0(out.sae, x))
    assert c.shift == pytest.approx(_naive_shift(sae, x, target), abs=1e-4)
    # one shift for every latent: where nothing was clamped, threshold differences are kept
    old, new = sae.folded().threshold.detach(), out.sae.threshold.detach()
    kept = new > 0
    assert torch.allclose((new - old)[kept], torch.full_like(new[kept], c.shift), atol=1e-6)
    # rows it was not calibrated on land near the target, not on it
    assert abs(_l0(out.sae, _rows(seed=9)) - target) < 0.25 * target


def test_a_frequency_aware_batchtopk_keeps_its_per_latent_costs():
    sae = _batchtopk(0.3, freq_cost=FreqCostConfig(form="neglog"))
    with torch.no_grad():
        sae.fire_rate.copy_(torch.logspace(-4, -1, D_SAE))
    out = calibrate_l0(sae, _rows(), 8.0)
    assert abs(out.calibration.l0_after - 8.0) <= 1 / ROWS
    costs = (sae.inference_threshold() - sae.threshold).detach()  # each latent's cost, above the learned threshold
    assert costs.std() > 0.01
    shifted = out.sae.threshold.detach() - costs
    kept = shifted + costs > 0
    assert torch.allclose(shifted[kept], shifted[kept][0].expand(int(kept.sum())), atol=1e-5)


def test_what_cannot_be_calibrated_says_why():
    topk = create_sae(SAEConfig(d_in=D_IN, d_sae=D_SAE, arch=TopKConfig(k=8))).eval()
    with pytest.raises(GreyglassError, match="topk SAE has no threshold to calibrate"):
        calibrate_l0(topk, _rows(), 8.0)
    with pytest.raises(GreyglassError, match="target L0 90 is out of reach on these 400 rows"):
        calibrate_l0(_batchtopk(0.3), _rows(), 90.0)  # about half the latents have a positive pre-activation
    assert calibration_target(SAEConfig(arch=MatryoshkaConfig(k=12))) == 12.0
    assert calibration_target(SAEConfig(arch=JumpReLUConfig(target_l0=5.0))) == 5.0
    assert calibration_target(SAEConfig(arch=JumpReLUConfig())) is None
    assert calibration_target(SAEConfig(arch=TopKConfig(k=8))) is None


def test_the_calibrated_folder_loads_and_records_what_was_done(tmp_path):
    sae = _batchtopk(0.9)
    trained = save_sae(sae, tmp_path / "sae0-batchtopk", training={"train": {"steps": 3}, "final": {"fvu": 0.5}})
    out = calibrate_l0(load_sae(trained), _rows(), 8.0)  # a folder loads as the JumpReLU it was saved as
    folder = save_calibrated(out, trained)
    assert folder.name == "sae0-batchtopk-calibrated" and trained.is_dir()
    record = read_training(folder)
    assert record["calibration"]["target_l0"] == 8.0 and record["calibrated_from"] == str(trained)
    assert record["trained_sae"]["arch"]["name"] == "batchtopk" and record["train"] == {"steps": 3}
    assert record["sae"]["arch"]["name"] == "jumprelu"
    again = load_sae(folder)
    assert _l0(again, _rows()) == pytest.approx(out.calibration.l0_after)


@pytest.mark.parametrize("evaluated", [MetricsConfig(tokens=100, batch_windows=2), MetricsConfig(tokens=300)])
def test_calibration_rows_are_held_out_windows_after_every_one_evaluation_reads(tiny_llama, evaluated):
    site, heldout = "blocks.1.hook_resid_post", CorpusConfig(split="heldout", context_size=16)
    rows = calibration_rows(tiny_llama, site, heldout, 200, evaluated)
    read = sum(len(ids) for ids, _ in _eval_windows(tiny_llama, site, heldout, evaluated)[0])
    assert 0 < read <= rows.first_window
    # the rows are the counted rows of the windows from there on, in order
    after = next(iter(model_windows(tiny_llama, [site], heldout, 32, skip=rows.first_window)))
    expected = after.acts[site][after.mask].float()  # [n, d]
    n = min(len(expected), len(rows.x))
    assert len(rows.x) >= 200 and n >= 200 and torch.allclose(rows.x[:n], expected[:n], atol=1e-5)


def _small_corpus(tmp_path):
    corpus = tmp_path / "small.jsonl"  # 40 documents: the held-out split is documents 19 and 39
    corpus.write_text("\n".join(json.dumps({"text": f"document {i} " + "word " * 60}) for i in range(40)) + "\n")
    return corpus


def test_calibration_rows_say_when_the_held_out_split_is_too_small(tiny_llama, tmp_path):
    heldout = CorpusConfig(corpus=str(_small_corpus(tmp_path)), split="heldout", context_size=16)
    with pytest.raises(GreyglassError, match="fewer than the 500 to calibrate on; give a larger --corpus"):
        calibration_rows(tiny_llama, "blocks.1.hook_resid_post", heldout, 500, MetricsConfig(tokens=50))


def test_calibrate_command_writes_the_calibrated_folder_and_its_section(tiny_llama, tiny_llama_folder, tiny_sae_folder,
                                                                        tmp_path, capsys):
    cfg = SAEConfig(d_in=64, d_sae=96, arch=BatchTopKConfig(k=6), hook_name="blocks.1.hook_resid_post",
                    model_name=str(tiny_llama_folder), context_size=32)
    sae = create_sae(cfg, seed=0).eval()
    sae.threshold.fill_(0.5)
    trained = save_sae(sae, tmp_path / "batchtopk")
    run = tmp_path / "run"
    assert main(["sae", "calibrate", str(trained), "--tokens", "300", "--no-progress", "--out", str(run)]) == 0
    assert section_for(run).summary() in capsys.readouterr().out  # the terminal says what the report says
    res = json.loads((run / "results.json").read_text())
    c = res["calibration"]
    assert c["target_l0"] == 6.0 and c["rows"] >= 300 and abs(c["l0_after"] - 6.0) <= 1 / c["rows"]
    assert c["first_window"] > 20_000 / 32  # after the windows of sae eval's default 20,000 tokens
    assert res["sae"] == "batchtopk-calibrated" and read_training(run / res["sae"])["calibrated_from"] == str(trained)
    # calibrating the calibrated folder again finds the target it came from, and nearly no shift
    again = tmp_path / "again"
    assert main(["sae", "calibrate", str(run / res["sae"]), "--tokens", "300", "--no-progress", "--out", str(again)]) == 0
    assert json.loads((again / "results.json").read_text())["calibration"]["shift"] == pytest.approx(0.0, abs=1e-3)
    # a held-out split too small for evaluation and calibration stops before any file is written
    small = ["--corpus", str(_small_corpus(tmp_path)), "--eval-tokens", "50", "--out", str(tmp_path / "small")]
    assert main(["sae", "calibrate", str(trained), "--tokens", "500", "--no-progress", *small]) == 2
    assert "fewer than the 500 to calibrate on" in capsys.readouterr().err and not (tmp_path / "small").exists()
    # a TopK SAE stops before the model loads, with a line that says why; no run folder is left
    assert main(["sae", "calibrate", str(tiny_sae_folder), "--out", str(tmp_path / "topk")]) == 2
    assert "topk SAE has no threshold to calibrate" in capsys.readouterr().err
    assert not (tmp_path / "topk").exists()
