"""Frequency-aware sparsity: the cost weights, the firing-rate average, and each architecture's
use of the cost, checked against naive dense computations."""

import json
import math

import pytest
import torch

from greyglass import GreyglassError
from greyglass.sae.architectures import create_sae
from greyglass.sae.config import ARCHITECTURES, FreqCostConfig, JumpReLUConfig, ReLUConfig, SAEConfig, TopKConfig, TrainConfig
from greyglass.sae.io import load_sae, save_sae
from greyglass.sae.train import train_saes
from greyglass.sae.frequency import cost_weights

D_IN, D_SAE = 16, 48


def test_cost_weights_follow_the_formula_within_floor_and_ceiling():
    rates = torch.tensor([1.0, 1 / D_IN, 1e-1, 1e-3, 1e-9])
    w = cost_weights(rates, D_IN, "neglog", floor=0.25, ceiling=4.0)
    expected = [-math.log(p) / math.log(D_IN) for p in rates.tolist()]
    torch.testing.assert_close(w, torch.tensor(expected).clamp(0.25, 4.0))
    assert w[0] == 0.25 and w[1] == pytest.approx(1.0) and w[-1] == 4.0  # nothing is free, rare is capped
    w = cost_weights(rates, D_IN, "power", power=0.5, floor=0.1, ceiling=3.0)
    torch.testing.assert_close(w, (rates * D_IN).pow(-0.5).clamp(0.1, 3.0))
    assert (cost_weights(rates, D_IN, "none") == 1).all()


def test_config_rejects_bad_settings():
    with pytest.raises(GreyglassError, match="FreqCostConfig.form = 'log' is not allowed"):
        FreqCostConfig(form="log")
    with pytest.raises(GreyglassError, match="relu"):
        SAEConfig(arch=ReLUConfig(), freq_cost=FreqCostConfig(form="neglog"))
    with pytest.raises(GreyglassError, match="--freq-cost-floor"):
        FreqCostConfig(form="neglog", floor=0)


def _sae(arch, **settings):
    """A frequency-aware SAE of `arch` (k = 4, cost scale 1 for TopK and BatchTopK; `settings` of its own)."""
    topk = {"k": 4, "freq_cost_scale": 1.0} if arch in ("topk", "batchtopk") else {}
    cfg = SAEConfig(arch=ARCHITECTURES[arch](**topk, **settings), d_in=D_IN, d_sae=D_SAE,
                    freq_cost=FreqCostConfig(form="neglog", decay=0.9), b_dec_init="zeros", norm_scale=1.0)
    sae = create_sae(cfg, seed=0).train()
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.3, generator=torch.Generator().manual_seed(1))
        # some latents fire often (cheap), some rarely (costly)
        sae.fire_rate.copy_(torch.logspace(-4, -0.5, D_SAE)[torch.randperm(D_SAE, generator=torch.Generator().manual_seed(2))])
    return sae


def _x():
    return torch.randn(64, D_IN, generator=torch.Generator().manual_seed(3)) * 2


def test_topk_selects_by_pre_minus_cost_and_reconstructs_with_real_values():
    sae, x = _sae("topk"), _x()
    rates = sae.fire_rate.clone()
    w = sae.cost_weights()
    out = sae(x)
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc  # [N, d_sae]
    naive_idx = (pre - 1.0 * w).topk(4, dim=-1).indices
    assert torch.equal(out.indices.sort(-1).values, naive_idx.sort(-1).values)
    assert not torch.equal(naive_idx.sort(-1).values, pre.topk(4, dim=-1).indices.sort(-1).values)  # the cost mattered
    dense = torch.zeros_like(pre).scatter(1, naive_idx, pre.gather(1, naive_idx).relu())
    torch.testing.assert_close(out.reconstruction, dense @ sae.W_dec + sae.b_dec)
    # the firing-rate average moved toward this batch's rates
    counts = (dense > 0).sum(0).float()
    torch.testing.assert_close(sae.fire_rate, 0.9 * rates + 0.1 * counts / len(x))


def test_batchtopk_selects_over_the_batch_by_pre_minus_cost():
    sae, x = _sae("batchtopk"), _x()
    w = sae.cost_weights()
    out = sae(x)
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    ranked = torch.where(pre > 0, pre - w, 0.0)
    cut = ranked.flatten().topk(4 * len(x)).values.min()
    keep = (ranked >= cut) & (pre > 0)
    dense = pre * keep
    torch.testing.assert_close(out.reconstruction, dense @ sae.W_dec + sae.b_dec)
    assert out.l0.item() == pytest.approx(keep.sum(-1).float().mean().item())


def test_jumprelu_penalises_each_active_latent_by_its_weight():
    sae, x = _sae("jumprelu", l0_coefficient=0.5, init_threshold=0.2), _x()
    w = sae.cost_weights()
    out = sae(x)
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    active = (pre > sae.threshold).float()
    torch.testing.assert_close(out.aux, 0.5 * (active * w).sum(-1).mean())
    assert not torch.isclose(out.aux, 0.5 * active.sum(-1).mean())
    out.aux.backward()
    assert sae.threshold.grad is not None and sae.threshold.grad.abs().sum() > 0


def test_jumprelu_target_l0_weights_average_one_over_firings():
    sae, x = _sae("jumprelu", l0_coefficient=0.5, target_l0=5.0, init_from_target=False, init_threshold=0.2), _x()
    sae.fire_rate.copy_(torch.linspace(1e-4, 0.5, sae.cfg.d_sae))  # some latents common, some rare
    w = sae.cost_weights()
    norm = w * sae.fire_rate.sum() / (sae.fire_rate * w).sum()
    assert (sae.fire_rate * norm).sum().item() == pytest.approx(sae.fire_rate.sum().item())
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    weighted_l0 = ((pre > sae.threshold).float() * norm).sum(-1).mean()
    torch.testing.assert_close(sae(x).aux, 0.5 * (weighted_l0 / 5.0 - 1) ** 2)


def test_threshold_moves_at_the_pace_of_its_scale():
    from greyglass.sae.train import _param_groups

    groups = _param_groups(create_sae(SAEConfig(arch=JumpReLUConfig(), d_in=D_IN, d_sae=D_SAE)))
    assert [g["lr_scale"] for g in groups] == [1.0, pytest.approx(D_IN ** 0.5)]
    assert [p.shape for p in groups[1]["params"]] == [(D_SAE,)]
    assert len(_param_groups(create_sae(SAEConfig(arch=TopKConfig(k=4), d_in=D_IN, d_sae=D_SAE)))) == 1


def test_training_with_frequency_cost_tracks_firing_rates(tmp_path):
    g = torch.Generator().manual_seed(0)
    batches = ({"": torch.randn(128, D_IN, generator=g)} for _ in range(100))
    cfg = SAEConfig(arch=TopKConfig(k=4), d_in=D_IN, d_sae=D_SAE, freq_cost=FreqCostConfig(form="neglog", decay=0.9))
    result = train_saes([cfg], TrainConfig(tokens=128 * 30, batch_size=128, lr=1e-3, warmup_steps=2), batches,
                        tmp_path / "run", progress=False)
    sae = result.saes[0]
    assert sae.fire_rate.sum().item() == pytest.approx(4.0, rel=0.05)  # k latents per token in all
    assert result.metrics[0]["l0"] == pytest.approx(4.0)
    assert sae.cost_weights().min() >= cfg.freq_cost.floor


# ---- inference uses the selection rule training used (issue 13, item 5) --------------------

def test_topk_with_cost_encodes_at_inference_as_it_selected_in_training(tmp_path):
    sae, x = _sae("topk"), _x()
    inference = sae.eval().encode_topk(x).indices.sort(-1).values  # before training moves the rates
    trained = sae.train()(x).indices.sort(-1).values
    assert torch.equal(inference, trained)
    # and the saved folder gives back the same encoder (the rates travel with it)
    sae.eval()
    loaded = load_sae(save_sae(sae, tmp_path / "topk"))
    torch.testing.assert_close(loaded.fire_rate, sae.fire_rate)
    torch.testing.assert_close(loaded.encode(x), sae.encode(x), rtol=1e-5, atol=1e-5)


def test_batchtopk_with_cost_fires_at_inference_where_training_kept():
    sae, x = _sae("batchtopk"), _x()
    w = sae.cost_weights()
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    rates = sae.fire_rate.clone()
    sae(x)  # one training step: learns the threshold
    sae.fire_rate.copy_(rates)  # the rates it selected with (the step then moved them)
    ranked = torch.where(pre > 0, pre - w, 0.0)
    cut = ranked.flatten().topk(4 * len(x)).values.min()
    kept = (ranked >= cut) & (pre > 0)
    assert sae.threshold.item() == pytest.approx(cut.item())  # learned on pre - cost, where it chose
    fired = sae.eval().encode(x) > 0
    # the same latents, except the one sitting exactly at the threshold (SAELens's strict `>`)
    assert (fired & ~kept).sum() == 0 and (kept & ~fired).sum() <= 1
    torch.testing.assert_close(sae.inference_threshold(), sae.threshold + 1.0 * w)


def test_batchtopk_with_cost_folder_is_the_trained_encoder(tmp_path):
    sae, x = _sae("batchtopk"), _x()
    sae(x)
    sae.eval()
    loaded = load_sae(save_sae(sae, tmp_path / "btk"))
    assert loaded.cfg.architecture == "jumprelu"  # per-latent thresholds threshold + cost, as SAELens reads it
    fresh = torch.randn(256, D_IN, generator=torch.Generator().manual_seed(9)) * 2
    torch.testing.assert_close(loaded.encode(fresh), sae.encode(fresh), rtol=1e-5, atol=1e-5)


def test_jumprelu_with_cost_selects_by_its_thresholds_alone():
    sae, x = _sae("jumprelu", init_threshold=0.2), _x()
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    torch.testing.assert_close(sae.eval().encode(x), pre.relu() * (pre > sae.threshold))
    assert torch.equal(sae.train()(x).latents > 0, pre > sae.threshold)


def test_saelens_view_of_a_frequency_aware_topk_is_a_plain_topk(tmp_path):
    from greyglass.sae.io import read_training, saelens_encoder

    sae, x = _sae("topk"), _x()
    sae.eval()
    plain = saelens_encoder(sae)
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    by_pre = pre.topk(4, dim=-1).indices
    expected = torch.zeros_like(pre).scatter(1, by_pre, pre.gather(1, by_pre).relu())
    torch.testing.assert_close(plain.encode(x), expected, rtol=1e-5, atol=1e-5)
    assert not torch.equal(plain.encode(x) > 0, sae.encode(x) > 0)
    assert saelens_encoder(_sae("batchtopk")) is None and saelens_encoder(_sae("jumprelu")) is None
    folder = save_sae(sae, tmp_path / "topk")
    assert "SAELens selects by pre-activation alone" in read_training(folder)["saelens_reads"]
    assert "greyglass selects" in json.loads((folder / "cfg.json").read_text())["metadata"]["greyglass_note"]


def test_folders_saved_before_the_cost_travelled_load_as_the_plain_encoder_they_were(tmp_path):
    from greyglass.sae.io import FREQUENCY

    sae, x = _sae("topk"), _x()
    folder = save_sae(sae.eval(), tmp_path / "old")
    (folder / FREQUENCY).unlink()
    loaded = load_sae(folder)
    assert not loaded.cfg.freq_cost.on
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    assert torch.equal(loaded.encode(x) > 0, torch.zeros_like(pre, dtype=torch.bool).scatter(1, pre.topk(4, -1).indices, True) & (pre > 0))


def test_a_broken_frequency_file_is_a_clear_error(tmp_path):
    from safetensors.torch import save_file

    from greyglass.sae.io import FREQUENCY

    folder = save_sae(_sae("topk").eval(), tmp_path / "bad")
    save_file({"fire_rate": torch.ones(3)}, str(folder / FREQUENCY))
    with pytest.raises(GreyglassError, match=r"frequency.safetensors: needs a finite tensor fire_rate of shape \[48\]"):
        load_sae(folder)
