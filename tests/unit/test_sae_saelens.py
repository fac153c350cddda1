"""Interoperability: SAELens loads a greyglass SAE folder and computes the same encodings, and
greyglass loads a folder SAELens saved.

SAELens is not a greyglass dependency: `make test` runs this file in `.venv-saelens` (SAELens
6.54) with GREYGLASS_REQUIRE_SAELENS=1, where a missing `sae_lens` is a failure. Elsewhere
(the plain `pytest` run in `.venv`) it is skipped, saying how to run it.
"""

import os

import pytest
import torch

from greyglass.sae.architectures import create_sae
from greyglass.sae.config import ARCHITECTURES, FreqCostConfig, SAEConfig
from greyglass.sae.io import load_sae, save_sae
from greyglass.sae.io import saelens_encoder

REQUIRED = os.environ.get("GREYGLASS_REQUIRE_SAELENS") == "1"
try:
    import sae_lens
except ImportError as e:
    if REQUIRED:
        raise ImportError(f"GREYGLASS_REQUIRE_SAELENS=1 but sae_lens cannot be imported ({e}); "
                          "`make saelens-test` installs it into .venv-saelens") from e
    pytest.skip("sae_lens is not installed here; `make saelens-test` runs this file with it", allow_module_level=True)

SITE = "blocks.3.hook_resid_post"


def _trained(arch: str, tmp_path, freq_cost: str = "none"):
    """A greyglass SAE after one training step (BatchTopK learns its threshold; the cost its rates), and its folder."""
    settings = {"jumprelu": {"init_threshold": 0.3}, "relu": {}}.get(arch, {"k": 6, "freq_cost_scale": 2.0})
    ours = create_sae(SAEConfig(arch=ARCHITECTURES[arch](**settings), d_in=32, d_sae=96, hook_name=SITE,
                                model_name="tiny", context_size=64, freq_cost=FreqCostConfig(form=freq_cost)))
    x = torch.randn(200, 32, generator=torch.Generator().manual_seed(0)) * 7 + 2
    ours.initialise_from(x)
    ours.train()(x)
    ours.eval()
    return ours, save_sae(ours, tmp_path / arch), x


def _fresh(n=300):
    return torch.randn(n, 32, generator=torch.Generator().manual_seed(1)) * 7 + 2


@pytest.mark.parametrize("arch,freq_cost", [("relu", "none")] + [(arch, cost) for arch in ("topk", "batchtopk",
                                                                                             "matryoshka", "jumprelu")
                                                                   for cost in ("none", "neglog")])
def test_saelens_reads_greyglass_folders(arch, freq_cost, tmp_path):
    ours, folder, x = _trained(arch, tmp_path, freq_cost=freq_cost)
    theirs = sae_lens.SAE.load_from_disk(str(folder), device="cpu")
    # BatchTopK and Matryoshka BatchTopK are saved as SAELens saves its own after training: a JumpReLU
    expected_class = {"relu": "StandardSAE", "topk": "TopKSAE"}.get(arch, "JumpReLUSAE")
    assert type(theirs).__name__ == expected_class
    assert theirs.cfg.metadata.hook_name == SITE and theirs.cfg.metadata.model_name == "tiny"  # v6: the metadata block
    assert theirs.cfg.metadata.context_size == 64
    plain = saelens_encoder(ours)  # a frequency-aware TopK as SAELens reads it, else None
    expected = load_sae(folder) if plain is None else plain  # what SAELens should compute
    with torch.no_grad():
        # the training batch: BatchTopK's threshold is exactly one of its activations, which
        # both must drop (SAELens's strict `pre > threshold`); same folded weights, same rounding
        torch.testing.assert_close(theirs.encode(x), expected.encode(x), rtol=1e-5, atol=1e-5)
        fresh = _fresh()
        # the unsaved SAE computes the same up to rounding (the folding), on data without ties
        torch.testing.assert_close(theirs.encode(fresh), expected.encode(fresh), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(theirs.decode(theirs.encode(fresh)), expected.reconstruct(fresh), rtol=1e-4, atol=1e-4)
        if plain is None:
            torch.testing.assert_close(theirs.encode(fresh), ours.encode(fresh), rtol=1e-4, atol=1e-4)
        else:  # a frequency-aware TopK: SAELens cannot express its selection, and it shows
            assert not torch.equal(theirs.encode(fresh) > 0, ours.encode(fresh) > 0)


@pytest.mark.parametrize("arch", ["batchtopk", "jumprelu"])
def test_an_activation_exactly_at_the_threshold_does_not_fire_in_either(arch, tmp_path):
    ours, folder, x = _trained(arch, tmp_path)
    mine = load_sae(folder)
    pre = mine.pre_activations(x)
    token, latent = divmod(int(pre.flatten().argmax()), pre.shape[1])
    with torch.no_grad():
        mine.threshold[latent] = pre[token, latent]  # exactly at the threshold
    folder = save_sae(mine, tmp_path / "tie")
    theirs = sae_lens.SAE.load_from_disk(str(folder), device="cpu")
    with torch.no_grad():
        assert theirs.encode(x)[token, latent] == 0
        assert load_sae(folder).encode(x)[token, latent] == 0
        torch.testing.assert_close(theirs.encode(x), load_sae(folder).encode(x), rtol=1e-5, atol=1e-5)


def test_the_matryoshka_loss_and_its_gradients_are_saelens_matryoshka_batchtopk():
    """Same weights, same batch: SAELens's training loss (the full squared error plus each inner
    prefix's, BatchTopK over the whole dictionary) and ours agree, gradients included."""
    from sae_lens.saes.sae import TrainStepInput

    ours = create_sae(SAEConfig(arch=ARCHITECTURES["matryoshka"](k=6, widths=(12, 48)), d_in=32, d_sae=96,
                                norm_scale=1.0)).train()
    theirs = sae_lens.MatryoshkaBatchTopKTrainingSAE(sae_lens.MatryoshkaBatchTopKTrainingSAEConfig(
        d_in=32, d_sae=96, k=6, matryoshka_widths=[12, 48, 96]))
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in ours.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        ours.after_step()  # unit decoder rows, as training keeps them (SAELens's rescaling by their norm is then 1)
        for name, p in ours.named_parameters():
            getattr(theirs, name).copy_(p)
    x = _fresh(200)
    mine = ours(x)
    step = theirs.training_forward_pass(TrainStepInput(sae_in=x, coefficients={}, dead_neuron_mask=None,
                                                       n_training_steps=0, is_logging_step=False))
    assert set(step.losses) == {"mse_loss", "auxiliary_reconstruction_loss", "inner_mse_loss_12", "inner_mse_loss_48"}
    torch.testing.assert_close(mine.mse, step.losses["mse_loss"], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(mine.loss, step.loss, rtol=1e-5, atol=1e-4)
    params = ("W_enc", "W_dec", "b_enc", "b_dec")
    grads = torch.autograd.grad(mine.loss, [getattr(ours, n) for n in params])
    for name, a, b in zip(params, grads, torch.autograd.grad(step.loss, [getattr(theirs, n) for n in params])):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=name)


@pytest.mark.parametrize("arch", ["standard", "topk", "jumprelu"])
def test_greyglass_reads_folders_saelens_saved(arch, tmp_path):
    """SAELens v6 writes `hook_name` and the other run facts only in cfg.json's `metadata` block."""
    from sae_lens.saes.sae import SAEMetadata

    sizes = {"d_in": 32, "d_sae": 96, "metadata": SAEMetadata(hook_name=SITE, model_name="gpt2")}
    theirs = {"standard": lambda: sae_lens.StandardSAE(sae_lens.StandardSAEConfig(**sizes)),
              "topk": lambda: sae_lens.TopKSAE(sae_lens.TopKSAEConfig(k=5, **sizes)),
              "jumprelu": lambda: sae_lens.JumpReLUSAE(sae_lens.JumpReLUSAEConfig(**sizes))}[arch]()
    with torch.no_grad():
        gen = torch.Generator().manual_seed(2)
        for p in theirs.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        if arch == "jumprelu":
            theirs.threshold.abs_()
    theirs.save_model(tmp_path / arch)
    ours = load_sae(tmp_path / arch)
    assert (ours.cfg.hook_name, ours.cfg.model_name) == (SITE, "gpt2")
    x = _fresh()
    with torch.no_grad():
        torch.testing.assert_close(ours.encode(x), theirs.encode(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours.reconstruct(x), theirs.decode(theirs.encode(x)), rtol=1e-5, atol=1e-5)
