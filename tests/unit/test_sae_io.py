"""SAE folders: the cfg.json layouts greyglass reads (SAELens v6's metadata block, older flat keys)
and the SAELens options it refuses rather than misreads."""

import json

import pytest
import torch

from greyglass import GreyglassError
from greyglass.sae import SAEConfig, SparseAutoencoder
from greyglass.sae.io import load_sae


def _saved(tmp_path):
    sae = SparseAutoencoder(SAEConfig(architecture="topk", d_in=16, d_sae=32, k=4, hook_name="blocks.1.hook_resid_post"))
    sae.initialise_from(torch.randn(32, 16, generator=torch.Generator().manual_seed(0)))
    return sae.save(tmp_path / "sae")


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

    model_dir = tmp_path / "model"
    tiny_llama.model.save_pretrained(model_dir)
    tiny_llama.tokenizer.save_pretrained(model_dir)
    site = "blocks.1.hook_resid_post"
    sae = SparseAutoencoder(SAEConfig(architecture="topk", d_in=tiny_llama.d_model, d_sae=128, k=4, hook_name=site,
                                      freq_cost="neglog", freq_cost_scale=5.0, context_size=32))
    sae.initialise_from(torch.randn(64, tiny_llama.d_model, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        sae.fire_rate.copy_(torch.logspace(-4, -0.5, 128))  # costs that change which latents win
    folder = sae.eval().save(tmp_path / "sae")
    assert main(["sae", "eval", str(folder), "--model", str(model_dir), "--tokens", "200", "--batch-windows", "4",
                 "--out", str(tmp_path / "eval"), "--no-progress", "--unverified-text"]) == 0
    r = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert r["saelens_reads"]["l0"] <= 4 + 1e-6
    assert r["saelens_reads"]["fvu"] != r["fvu"]  # another encoder, another reconstruction
    assert "as SAELens reads this folder" in capsys.readouterr().out
