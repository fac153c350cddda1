"""The sparse TopK kernels against the naive dense versions, values and gradients."""

import torch

from greyglass.sae.kernels import dense_decode, gather_dot, sparse_decode


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
