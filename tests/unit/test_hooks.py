"""Sites and hooks on tiny random models of every supported family."""

import pytest
import torch

from greyglass.models.hooks import adding, capturing, replacing, run_to_sites
from greyglass.models.tiny import TINY_FAMILIES, tiny_model


@pytest.fixture(scope="module", params=TINY_FAMILIES)
def lm(request):
    return tiny_model(request.param)


@pytest.fixture(scope="module")
def ids(lm):
    return lm.tokenizer(["the quick brown fox jumps", "over the lazy dog again!!"], return_tensors="pt").input_ids


def test_resid_sites_match_hidden_states(lm, ids):
    sites = [f"resid_pre.{l}" for l in range(lm.n_layers)] + [f"resid_post.{l}" for l in range(lm.n_layers - 1)]
    acts = run_to_sites(lm, ids, sites)
    hidden = lm.model(ids, output_hidden_states=True).hidden_states
    for layer in range(lm.n_layers):
        assert torch.equal(acts[f"blocks.{layer}.hook_resid_pre"], hidden[layer])
    for layer in range(lm.n_layers - 1):  # the last entry of hidden_states is after the final norm
        assert torch.equal(acts[f"blocks.{layer}.hook_resid_post"], hidden[layer + 1])


def test_attn_and_mlp_outputs_sum_to_the_residual_update(lm, ids):
    layer = 1
    acts = run_to_sites(lm, ids, [f"{k}.{layer}" for k in ("resid_pre", "attn_out", "mlp_out", "resid_post")])
    a = {k.split(".hook_")[1]: v for k, v in acts.items()}
    torch.testing.assert_close(a["resid_pre"] + a["attn_out"] + a["mlp_out"], a["resid_post"])
    assert a["attn_out"].abs().sum() > 0 and a["mlp_out"].abs().sum() > 0


def test_early_stop_never_runs_later_layers(lm, ids):
    fired = []
    lm.blocks[2].register_forward_hook(lambda *a: fired.append(2)).remove()  # sanity: removable
    handles = [lm.blocks[i].register_forward_hook(lambda *_a, i=i: fired.append(i)) for i in range(lm.n_layers)]
    head = lm.unembed.register_forward_hook(lambda *_a: fired.append("head"))
    try:
        run_to_sites(lm, ids, ["resid_post.1"])
    finally:
        for h in [*handles, head]:
            h.remove()
    assert fired == [0, 1]


def test_hooks_are_removed_even_on_error(lm, ids):
    module = lm.blocks[1]
    before = len(module._forward_hooks)
    with pytest.raises(RuntimeError, match="boom"):
        with capturing(lm, ["resid_post.1"]):
            assert len(module._forward_hooks) == before + 1
            raise RuntimeError("boom")
    assert len(module._forward_hooks) == before


def test_adding_a_vector_shifts_the_next_layer_input(lm, ids):
    v = torch.randn(lm.d_model)
    clean = run_to_sites(lm, ids, ["resid_pre.2"])["blocks.2.hook_resid_pre"]
    with adding(lm, "resid_post.1", v, coef=2.0):
        steered = run_to_sites(lm, ids, ["resid_pre.2"])["blocks.2.hook_resid_pre"]
    torch.testing.assert_close(steered, clean + 2 * v)
    with adding(lm, "resid_post.1", v, positions=slice(-1, None)):
        last_only = run_to_sites(lm, ids, ["resid_pre.2"])["blocks.2.hook_resid_pre"]
    torch.testing.assert_close(last_only[:, :-1], clean[:, :-1])
    torch.testing.assert_close(last_only[:, -1], clean[:, -1] + v)


def test_replacing_changes_logits_and_is_undone(lm, ids):
    with torch.no_grad():
        clean = lm.model(ids).logits
        with replacing(lm, {"mlp_out.0": torch.zeros_like, "resid_pre.1": lambda x: x * 0.5}):
            patched = lm.model(ids).logits
        again = lm.model(ids).logits
    assert not torch.allclose(clean, patched)
    assert torch.equal(clean, again)


def test_capture_during_a_full_forward(lm, ids):
    with torch.no_grad(), capturing(lm, ["attn_out.0", "resid_post.3"]) as acts:
        logits = lm.model(ids).logits
    assert logits.shape[:2] == ids.shape
    assert acts["blocks.0.hook_attn_out"].shape == (*ids.shape, lm.d_model)
