"""Sparse kernels for TopK SAEs: touch only the k active latents of each token.

With k active latents out of d_sae, the dense decoder product `latents @ W_dec` spends
d_sae/k times the work it needs, forwards and backwards, and so does the backward of the
encoder. Two autograd functions replace them:

- `sparse_decode(values, indices, W_dec)`: sum of the k gathered decoder rows weighted by
  their values, `[N, d_in]`; its backward gathers for the values and scatters for `W_dec`.
- `gather_dot(x, W, indices)`: `x[n] . W[indices[n, j]]`, `[N, k]`, used to recompute the
  encoder's selected pre-activations with gradients (the selection itself is done without
  gradients on the dense product); its backward is the decode's transpose.

Both are checked against the dense versions, gradients included, in tests/unit/test_sae_kernels.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

def _gather_dot(x: Tensor, W: Tensor, indices: Tensor) -> Tensor:
    """`out[n, j] = x[n] . W[indices[n, j]]` without forming `x @ W.T` or the `[N, k, d]` gather.

    This is exactly the gradient of `embedding_bag` with respect to its per-sample weights,
    which PyTorch computes in one fused loop; we call that kernel directly.
    """
    n, k = indices.shape
    offsets = torch.arange(0, n * k, k, device=indices.device)  # [N]
    bag = torch.arange(n, device=indices.device).repeat_interleave(k)  # [N*k]
    out = torch.ops.aten._embedding_bag_per_sample_weights_backward(
        x.to(W.dtype).contiguous(), W, indices.reshape(-1), offsets, bag, 0, -1)
    return out.view(n, k)


def _decode(values: Tensor, indices: Tensor, W: Tensor) -> Tensor:
    """`out[n] = sum_j values[n, j] * W[indices[n, j]]`."""
    return F.embedding_bag(indices, W, per_sample_weights=values.to(W.dtype), mode="sum")


def _scatter_outer(coef: Tensor, indices: Tensor, x: Tensor, n_rows: int) -> Tensor:
    """`out[r] = sum over (n, j) with indices[n, j] == r of coef[n, j] * x[n]`: a [n_rows, d] gradient."""
    n, k = indices.shape
    rows = torch.arange(n, device=x.device).repeat_interleave(k)  # [N*k]
    s = torch.sparse_coo_tensor(torch.stack([indices.reshape(-1), rows]), coef.reshape(-1).to(x.dtype),
                                (n_rows, n), check_invariants=False)
    return torch.sparse.mm(s, x)  # [n_rows, d]


class SparseDecode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values: Tensor, indices: Tensor, W: Tensor) -> Tensor:  # [N, k], [N, k], [d_sae, d]
        ctx.save_for_backward(values, indices, W)
        return _decode(values, indices, W)  # [N, d]

    @staticmethod
    def backward(ctx, grad: Tensor):  # grad [N, d]
        values, indices, W = ctx.saved_tensors
        grad = grad.contiguous()
        g_values = _gather_dot(grad, W, indices) if ctx.needs_input_grad[0] else None
        g_W = _scatter_outer(values, indices, grad, W.shape[0]) if ctx.needs_input_grad[2] else None
        return g_values, None, g_W


class GatherDot(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, W: Tensor, indices: Tensor) -> Tensor:  # [N, d], [d_sae, d], [N, k]
        ctx.save_for_backward(x, W, indices)
        return _gather_dot(x, W, indices)  # [N, k]

    @staticmethod
    def backward(ctx, grad: Tensor):  # grad [N, k]
        x, W, indices = ctx.saved_tensors
        grad = grad.contiguous()
        g_x = _decode(grad, indices, W) if ctx.needs_input_grad[0] else None
        g_W = _scatter_outer(grad, indices, x, W.shape[0]) if ctx.needs_input_grad[1] else None
        return g_x, g_W, None


def sparse_decode(values: Tensor, indices: Tensor, W_dec: Tensor) -> Tensor:
    """Decode k active latents per row: `[N, k]` values at `[N, k]` indices -> `[N, d_in]` (no bias)."""
    return SparseDecode.apply(values, indices, W_dec)


def gather_dot(x: Tensor, W: Tensor, indices: Tensor) -> Tensor:
    """`x[n] . W[indices[n, j]]` for `x [N, d]`, `W [rows, d]`, `indices [N, k]` -> `[N, k]`."""
    return GatherDot.apply(x, W, indices)


def dense_decode(values: Tensor, indices: Tensor, W_dec: Tensor) -> Tensor:
    """The naive reference: scatter into a dense `[N, d_sae]` matrix and multiply."""
    dense = values.new_zeros(len(values), W_dec.shape[0]).scatter(1, indices, values)
    return dense @ W_dec
