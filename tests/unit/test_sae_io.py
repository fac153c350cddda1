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
