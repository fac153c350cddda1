"""Streaming per-latent statistics against the brute-force computation."""

import pytest
import torch

from greyglass.latents.stats import StatsAccumulator, naive_feature_stats


def _synthetic(B=6, T=24, d_sae=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 50, (B, T), generator=g)
    pre = torch.randn(B, T, d_sae, generator=g) * torch.linspace(0.1, 5, d_sae)
    latents = torch.relu(pre - 0.8)  # sparse, continuous, so no ties
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[:, 0] = False  # BOS
    mask[-1, T // 2:] = False  # padding
    latents[:, :, 3] = 0.0  # a dead latent
    return tokens, latents, mask


def _by_where(tc, j):
    keep = tc.where[j] >= 0
    order = tc.where[j][keep].argsort()
    return {name: getattr(tc, name)[j][keep][order] for name in ("where", "acts", "tokens", "ctx_acts")}


def test_streaming_matches_brute_force():
    tokens, latents, mask = _synthetic()
    acc = StatsAccumulator(latents.shape[-1], k=5, n_samples=7, window=3)
    for b in range(0, 6, 2):  # three batches of two windows
        acc.update(tokens[b:b + 2], latents[b:b + 2], mask[b:b + 2])
    got = acc.result()
    want = naive_feature_stats(tokens, latents, mask, k=5, n_samples=7, window=3)
    assert got.n_tokens == want.n_tokens == int(mask.sum())
    assert torch.equal(got.n_active, want.n_active)
    assert torch.allclose(got.act_sum, want.act_sum)
    assert torch.allclose(got.act_max, want.act_max)
    assert torch.equal(got.hist, want.hist)
    assert got.n_active[3] == 0 and (got.top.where[3] == -1).all()
    for j in range(latents.shape[-1]):
        for name in ("top", "samples"):
            a, b = _by_where(getattr(got, name), j), _by_where(getattr(want, name), j)
            assert torch.equal(a["where"], b["where"]), (name, j)
            assert torch.allclose(a["acts"], b["acts"])
            assert torch.equal(a["tokens"], b["tokens"])
            assert torch.allclose(a["ctx_acts"], b["ctx_acts"])
    # the top contexts really are the largest activations, sorted
    j = 15
    assert torch.allclose(got.top.acts[j], latents[..., j][mask].sort(descending=True).values[:5])


def test_context_is_cut_at_window_edges():
    tokens, latents, mask = _synthetic(B=1, T=8, d_sae=4)
    latents.zero_()
    latents[0, 1, 0] = 2.0  # first counted token: the context's left side is BOS (masked) and outside
    acc = StatsAccumulator(4, k=3, n_samples=3, window=3)
    acc.update(tokens, latents, mask)
    top = acc.result().top
    assert top.where[0, 0] == 0 and top.acts[0, 0] == 2.0
    assert top.tokens[0, 0].tolist()[:3] == [-1, -1, -1]
    assert top.tokens[0, 0, 3] == tokens[0, 1]
    assert (top.where[0, 1:] == -1).all()


def test_logit_lens_matches_manual_and_finds_a_planted_token(tiny_llama):
    from greyglass.latents.labels import auto_label
    from greyglass.models.lens import logit_lens

    lm = tiny_llama
    W_U = lm.unembed.weight.detach()  # [vocab, d]
    g = torch.Generator().manual_seed(0)
    W_dec = torch.randn(3, lm.d_model, generator=g)
    t = lm.tokenizer.convert_tokens_to_ids("q")
    W_dec[2] = W_U[t] / lm.final_norm.weight.detach()  # after the norm's gain, this points along q's unembedding
    lens = logit_lens(lm, W_dec, n=4, chunk=2)  # chunk < d_sae: exercises the chunking
    with torch.inference_mode():
        logits = lm.unembed(lm.final_norm(W_dec[0][None, None]))[0, 0]
    assert lens.promoted[0].tolist() == logits.topk(4).indices.tolist()
    assert lens.suppressed[0].tolist() == (-logits).topk(4).indices.tolist()
    assert lens.promoted[2, 0] == t
    assert auto_label([" q", "q", " z"], [" q", "\ufffd", "x"]) == "q, z -> q, x"
    assert auto_label([], []) == "(never fired)"


@pytest.mark.parametrize("family", ["gpt2", "gpt_neox"])
def test_logit_lens_leaves_out_the_final_layernorm_bias(family):
    """The norm's bias adds the same beta @ W_U to every latent; the lens applies the scale only."""
    from greyglass.models.lens import logit_lens
    from greyglass.models.tiny import tiny_model

    lm = tiny_model(family)
    norm = lm.final_norm
    g = torch.Generator().manual_seed(1)
    W_dec = torch.randn(4, lm.d_model, generator=g)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.5 * torch.rand(lm.d_model, generator=g))
        norm.bias.copy_(20 * torch.randn(lm.d_model, generator=g))  # large enough to dominate the lists
    lens = logit_lens(lm, W_dec, n=5)
    centred = W_dec - W_dec.mean(-1, keepdim=True)
    normed = centred / (centred.pow(2).mean(-1, keepdim=True) + norm.eps).sqrt() * norm.weight
    logits = normed @ lm.unembed.weight.T  # the scale only, no bias
    assert lens.promoted.tolist() == logits.topk(5).indices.tolist()
    assert lens.suppressed.tolist() == (-logits).topk(5).indices.tolist()
