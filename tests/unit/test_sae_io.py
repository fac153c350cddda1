"""SAE folders: the cfg.json layouts greyglass reads (SAELens v6's metadata block, older flat keys)
and the SAELens options it refuses rather than misreads."""

import json
import math

import pytest
import torch
from safetensors.torch import save_file

from greyglass import GreyglassError
from greyglass.sae.architectures import create_sae
from greyglass.sae.config import FreqCostConfig, JumpReLUConfig, SAEConfig, TopKConfig
from greyglass.sae.io import load_sae, save_sae


def _saved(tmp_path):
    sae = create_sae(SAEConfig(arch=TopKConfig(k=4), d_in=16, d_sae=32, hook_name="blocks.1.hook_resid_post"))
    sae.initialise_from(torch.randn(32, 16, generator=torch.Generator().manual_seed(0)))
    return save_sae(sae, tmp_path / "sae")


@pytest.mark.parametrize("layout", ["v6", "flat"])
def test_reads_the_site_from_the_v6_metadata_block_and_from_older_flat_keys(tmp_path, layout):
    """SAELens v6 keeps hook_name and the other run facts only in `metadata`; older folders
    (greyglass's own included) have them at the top level."""
    folder = _saved(tmp_path)
    cfg = json.loads((folder / "cfg.json").read_text())
    facts = {"hook_name": "blocks.7.hook_resid_pre", "model_name": "gpt2", "context_size": 77}
    for key in ("model_name", "hook_name", "context_size", "prepend_bos", "hook_layer"):
        cfg.pop(key, None)
        cfg["metadata"].pop(key, None)
    if layout == "flat":
        del cfg["metadata"]
        cfg.update(facts)
    else:
        cfg["metadata"].update(facts)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    (folder / "training.json").unlink()  # only cfg.json speaks
    sae = load_sae(folder)
    assert (sae.cfg.hook_name, sae.cfg.model_name, sae.cfg.context_size) == ("blocks.7.hook_resid_pre", "gpt2", 77)


def test_a_topk_that_rescales_by_decoder_norm_is_refused(tmp_path):
    folder = _saved(tmp_path)
    cfg = json.loads((folder / "cfg.json").read_text())
    (folder / "cfg.json").write_text(json.dumps({**cfg, "rescale_acts_by_decoder_norm": True}))
    with pytest.raises(GreyglassError, match="cfg.json: rescale_acts_by_decoder_norm = true"):
        load_sae(folder)


def test_sae_eval_reports_what_saelens_reads_of_a_frequency_aware_topk(tiny_llama, tmp_path, capsys):
    from greyglass.cli import main
    from greyglass.report.build import section_for

    model_dir = tmp_path / "model"
    tiny_llama.model.save_pretrained(model_dir)
    tiny_llama.tokenizer.save_pretrained(model_dir)
    site = "blocks.1.hook_resid_post"
    sae = create_sae(SAEConfig(arch=TopKConfig(k=4, freq_cost_scale=5.0), d_in=tiny_llama.d_model, d_sae=128,
                               hook_name=site, freq_cost=FreqCostConfig(form="neglog"), context_size=32))
    sae.initialise_from(torch.randn(64, tiny_llama.d_model, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        sae.fire_rate.copy_(torch.logspace(-4, -0.5, 128))  # costs that change which latents win
    folder = save_sae(sae.eval(), tmp_path / "sae")
    assert main(["sae", "eval", str(folder), "--model", str(model_dir), "--tokens", "200", "--batch-windows", "4",
                 "--out", str(tmp_path / "eval"), "--no-progress", "--unverified-text"]) == 0
    r = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert r["saelens_reads"]["l0"] <= 4 + 1e-6
    assert r["saelens_reads"]["fvu"] != r["metrics"]["fvu"]  # another encoder, another reconstruction
    printed = capsys.readouterr().out
    assert "as SAELens reads this folder" in printed and section_for(tmp_path / "eval").summary() in printed


# ---- folders written before the SAE configs nested (cfg.json unchanged, training.json flat) ----------

SITE = "blocks.2.hook_resid_post"
OLD_CFG = {  # cfg.json exactly as greyglass wrote it (and still writes it) for a TopK with k = 3
    "architecture": "topk", "d_in": 8, "d_sae": 16, "dtype": "float32", "device": "cpu",
    "apply_b_dec_to_input": True, "normalize_activations": "none", "reshape_activations": "none",
    "metadata": {"model_name": "tiny", "hook_name": SITE, "hook_head_index": None, "context_size": 32,
                 "prepend_bos": True, "sae_lens_training_version": None, "dataset_path": None},
    "k": 3, "model_name": "tiny", "hook_name": SITE, "hook_head_index": None, "context_size": 32, "prepend_bos": True,
    "sae_lens_training_version": None, "dataset_path": None, "hook_layer": 2, "activation_fn_str": "topk",
    "activation_fn_kwargs": {"k": 3}, "finetuning_scaling_factor": False}
OLD_SAE = {  # training.json's flat "sae" block as greyglass wrote it before the configs nested
    "architecture": "topk", "d_in": 8, "d_sae": 16, "k": 3, "l1_coefficient": 5.0, "l1_warmup_tokens": 0,
    "auxk_alpha": 0.03125, "k_aux": 4, "dead_tokens": 512, "l0_coefficient": 0.001, "target_l0": None,
    "jumprelu_bandwidth": 0.05, "jumprelu_init_threshold": 0.1, "jumprelu_init_from_target": True,
    "freq_cost": "neglog", "freq_cost_power": 0.5, "freq_cost_floor": 0.25, "freq_cost_ceiling": 4.0,
    "freq_cost_scale": 2.0, "freq_cost_decay": 0.999, "b_dec_init": "geometric_median", "norm_scale": 1.7,
    "model_name": "tiny", "hook_name": SITE, "context_size": 32, "prepend_bos": True}


def _old_folder(tmp_path, cfg, sae, tensors):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "cfg.json").write_text(json.dumps(cfg, indent=2))
    (folder / "training.json").write_text(json.dumps({"format": "greyglass-sae", "version": 1, "sae": sae,
                                                      "train": {"tokens": 10}}, indent=2))
    save_file(tensors, str(folder / "sae_weights.safetensors"))
    return folder


def _weights(d_in=8, d_sae=16):
    gen = torch.Generator().manual_seed(3)
    return {"W_enc": torch.randn(d_in, d_sae, generator=gen), "W_dec": torch.randn(d_sae, d_in, generator=gen),
            "b_enc": torch.randn(d_sae, generator=gen) * 0.1, "b_dec": torch.randn(d_in, generator=gen)}


def test_loads_a_frequency_aware_topk_folder_written_before_the_configs_nested(tmp_path):
    w = _weights()
    rates = torch.logspace(-3, -0.3, 16)
    folder = _old_folder(tmp_path, OLD_CFG, OLD_SAE, w)
    save_file({"fire_rate": rates}, str(folder / "frequency.safetensors"))
    sae = load_sae(folder)
    assert sae.cfg.arch == TopKConfig(k=3, k_aux=4, freq_cost_scale=2.0)
    assert sae.cfg.freq_cost == FreqCostConfig(form="neglog")
    assert (sae.cfg.dead_tokens, sae.cfg.hook_name, sae.cfg.model_name, sae.cfg.norm_scale) == (512, SITE, "tiny", 1.0)
    x = torch.randn(20, 8, generator=torch.Generator().manual_seed(4))
    pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    cost = (1 - (rates * 8).log() / math.log(8)).clamp(0.25, 4.0)  # neglog, within floor and ceiling
    chosen = (pre - 2.0 * cost).topk(3, dim=-1).indices
    expected = torch.zeros_like(pre).scatter(1, chosen, pre.gather(1, chosen).relu())
    torch.testing.assert_close(sae.encode(x), expected, rtol=1e-5, atol=1e-5)


def test_loads_a_jumprelu_folder_written_before_the_configs_nested(tmp_path):
    w = {**_weights(), "threshold": torch.full((16,), 0.3)}
    cfg = {**OLD_CFG, "architecture": "jumprelu", "activation_fn_str": "relu", "activation_fn_kwargs": {}}
    del cfg["k"]
    sae_block = {**OLD_SAE, "architecture": "jumprelu", "k": 32, "l0_coefficient": 2.0, "target_l0": 4.0,
                 "jumprelu_bandwidth": 0.2, "freq_cost": "none"}  # k > d_sae: the old config kept TopK's k for all
    sae = load_sae(_old_folder(tmp_path, cfg, sae_block, w))
    assert sae.cfg.arch == JumpReLUConfig(l0_coefficient=2.0, target_l0=4.0, bandwidth=0.2)
    assert not sae.cfg.freq_cost.on
    x = torch.randn(20, 8, generator=torch.Generator().manual_seed(5))
    pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    torch.testing.assert_close(sae.encode(x), pre.relu() * (pre > 0.3), rtol=1e-5, atol=1e-5)


def test_training_json_holds_the_nested_config_and_reads_back(tmp_path):
    cfg = SAEConfig(arch=JumpReLUConfig(target_l0=5.0, bandwidth=0.3), d_in=8, d_sae=16, hook_name=SITE,
                    freq_cost=FreqCostConfig(form="power", power=0.7), norm_scale=1.0)
    folder = save_sae(create_sae(cfg), tmp_path / "new")
    saved = json.loads((folder / "training.json").read_text())["sae"]
    assert saved["arch"]["name"] == "jumprelu" and saved["arch"]["bandwidth"] == 0.3
    assert saved["freq_cost"]["form"] == "power"
    assert SAEConfig.from_dict(saved) == cfg
    assert load_sae(folder).cfg == cfg.with_updates(b_dec_init="zeros")
