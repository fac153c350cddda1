"""The sparse TopK kernels against the naive dense versions, values and gradients, and BatchTopK's
fast selection against ranking every entry."""

import math

import pytest
import torch

from greyglass.sae import architectures
from greyglass.sae.architectures import create_sae
from greyglass.sae.config import BatchTopKConfig, FreqCostConfig, SAEConfig
from greyglass.sae.kernels import Bags, bag_decode, dense_decode, gather_dot, sparse_decode


def _case(n=37, d=24, d_sae=96, k=7, seed=0):
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(d_sae, d, generator=gen, dtype=torch.float64, requires_grad=True)
    values = torch.rand(n, k, generator=gen, dtype=torch.float64, requires_grad=True)
    indices = torch.rand(n, d_sae, generator=gen).topk(k).indices  # distinct per row, as TopK gives
    return W, values, indices


def test_sparse_decode_matches_dense_with_gradients():
    W, values, indices = _case()
    grad = torch.randn(len(values), W.shape[1], dtype=torch.float64)
    out = sparse_decode(values, indices, W)
    ref = dense_decode(values, indices, W)
    torch.testing.assert_close(out, ref)
    g_sparse = torch.autograd.grad((out * grad).sum(), [values, W])
    g_dense = torch.autograd.grad((ref * grad).sum(), [values, W])
    for a, b in zip(g_sparse, g_dense):
        torch.testing.assert_close(a, b)


def test_gather_dot_matches_dense_with_gradients():
    W, _, indices = _case(seed=1)
    x = torch.randn(len(indices), W.shape[1], dtype=torch.float64, requires_grad=True)
    out = gather_dot(x, W, indices)
    ref = (x @ W.T).gather(1, indices)
    torch.testing.assert_close(out, ref)
    grad = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad((out * grad).sum(), [x, W]), torch.autograd.grad((ref * grad).sum(), [x, W])):
        torch.testing.assert_close(a, b)


def test_kernels_pass_gradcheck():
    W, values, indices = _case(n=5, d=4, d_sae=9, k=3, seed=2)
    assert torch.autograd.gradcheck(lambda v, w: sparse_decode(v, indices, w), (values, W))
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, w: gather_dot(a, w, indices), (x, W))


def test_kernels_work_under_inference_mode():
    W, values, indices = _case()
    with torch.inference_mode():
        out = sparse_decode(values.detach(), indices, W.detach())
        dots = gather_dot(torch.ones(len(indices), W.shape[1], dtype=torch.float64), W.detach(), indices)
    torch.testing.assert_close(out, dense_decode(values, indices, W).detach())
    torch.testing.assert_close(dots, W.detach().sum(1)[indices])


def test_bag_decode_matches_dense_on_uneven_and_empty_bags():
    """Bags of any size, empty ones included (a token with no latent in a Matryoshka group)."""
    W, values, indices = _case(n=12, k=5, seed=3)
    ids = torch.tensor([0, 0, 1, 3, 3, 3, 4, 7, 7, 9, 9, 9] * 5).sort().values  # bags 2, 5, 6, 8, 10, 11 empty
    flat_values, flat_indices = values.reshape(-1)[: len(ids)], indices.reshape(-1)[: len(ids)]
    out = bag_decode(flat_values, flat_indices, W, Bags.from_ids(ids, 12))
    dense = torch.zeros(12, W.shape[0], dtype=torch.float64)
    ref = dense.index_put((ids, flat_indices), flat_values, accumulate=True) @ W
    torch.testing.assert_close(out, ref)
    grad = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad((out * grad).sum(), [values, W]),
                    torch.autograd.grad((ref * grad).sum(), [values, W])):
        torch.testing.assert_close(a, b)


def _naive_batch_select(ranked, pre, k):
    """BatchTopK's selection as first written: rank all N * d_sae entries, then each row's k_max."""
    cut = ranked.flatten().topk(min(k * len(ranked), ranked.numel()), sorted=False).values.min()
    k_max = max(1, int((ranked >= cut).sum(-1).max()))
    indices = ranked.topk(k_max, dim=-1, sorted=False).indices
    mask = (ranked.gather(1, indices) >= cut) & (pre.gather(1, indices) > 0)
    return cut, torch.zeros_like(ranked, dtype=torch.bool).scatter(1, indices, mask)


@pytest.mark.parametrize("case", ["sampled", "fallback", "freq_cost", "few_positive"])
def test_batchtopk_selection_is_the_naive_one(case, monkeypatch):
    """The sampled-bound cut and the row packing choose exactly the latents ranking everything
    chooses: on the sampled path, when the bound misses (the exact fallback), with a frequency
    cost (scores below the pre-activations), and with fewer positive pre-activations than k*N."""
    if case == "fallback":
        monkeypatch.setattr(architectures, "_CUT_MARGIN", 0.5)  # the sampled bound lands above the cut
    freq = FreqCostConfig(form="neglog") if case == "freq_cost" else FreqCostConfig()
    sae = create_sae(SAEConfig(arch=BatchTopKConfig(k=8), d_in=16, d_sae=1024, norm_scale=1.0, freq_cost=freq))
    gen = torch.Generator().manual_seed(4)
    if case == "freq_cost":
        sae.fire_rate.copy_(torch.rand(1024, generator=gen) * 0.02)
    if case == "few_positive":
        sae.b_enc.data.fill_(-6.0)  # about 1 in 1,000 pre-activations positive: the cut is 0
    x = torch.randn(600, 16, generator=gen) * 2  # 4,800 kept of 614,400 entries: the sampled path
    centred, pre, scores = sae._scores(x, sae.cost_weights())
    ranked = torch.where(pre > 0, scores, 0.0)
    n_keep = 8 * len(x)
    assert math.ceil(architectures._CUT_SAMPLE_HITS * pre.numel() / n_keep) < pre.numel()
    cut, chosen = _naive_batch_select(ranked, pre, 8)
    torch.testing.assert_close(architectures.batch_cut(ranked, n_keep), cut, rtol=0, atol=0)
    values, indices = sae._select(centred, pre, scores.clone())
    assert (indices.sort(dim=1).values.diff(dim=1) > 0).all()  # distinct latents in each row
    fired = torch.zeros_like(chosen).scatter(1, indices, values > 0)
    assert torch.equal(fired, chosen) and (int(chosen.sum()) >= n_keep) == (case != "few_positive")
    torch.testing.assert_close(sae.threshold, ranked[chosen].min())
    torch.testing.assert_close(torch.zeros_like(pre).scatter(1, indices, values), torch.where(chosen, pre, 0.0))
