"""Sparse kernels for TopK SAEs: touch only the k active latents of each token.

With k active latents out of d_sae, the dense decoder product `latents @ W_dec` spends
d_sae/k times the work it needs, forwards and backwards, and so does the backward of the
encoder. Two autograd functions (over flat entries grouped into bags) replace them:

- `sparse_decode(values, indices, W_dec)`: sum of the k gathered decoder rows weighted by
  their values, `[N, d_in]`; its backward gathers for the values and scatters for `W_dec`.
- `gather_dot(x, W, indices)`: `x[n] . W[indices[n, j]]`, `[N, k]`, used to recompute the
  encoder's selected pre-activations with gradients (the selection itself is done without
  gradients on the dense product); its backward is the decode's transpose.
- `bag_decode(values, indices, W_dec, bags)`: the same decode over flat entries grouped into
  any bags (`Bags`), e.g. one bag per token and Matryoshka group, so every group's contribution
  comes from one call.

All are checked against the dense versions, gradients included, in tests/unit/test_sae_kernels.py.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class Bags(NamedTuple):
    """Which output row (bag) each of E flat entries adds to: `ids [E]`, non-decreasing, and
    `offsets [n_bags]`, where each bag's entries start (empty bags allowed)."""

    ids: Tensor  # [E]
    offsets: Tensor  # [n_bags]

    @classmethod
    def uniform(cls, n: int, k: int, device: torch.device) -> Bags:
        """n bags of k entries each: the rows of an `[n, k]` matrix, flattened."""
        return cls(torch.arange(n, device=device).repeat_interleave(k), torch.arange(0, n * k, k, device=device))

    @classmethod
    def from_ids(cls, ids: Tensor, n_bags: int) -> Bags:
        """Bags from non-decreasing ids `[E]` in `[0, n_bags)`."""
        return cls(ids, torch.searchsorted(ids, torch.arange(n_bags, device=ids.device)))


def _gather_dot(x: Tensor, W: Tensor, indices: Tensor, bags: Bags) -> Tensor:
    """`out[e] = x[bags.ids[e]] . W[indices[e]]` without forming `x @ W.T` or the `[E, d]` gather.

    This is exactly the gradient of `embedding_bag` with respect to its per-sample weights,
    which PyTorch computes in one fused loop; we call that kernel directly.
    """
    return torch.ops.aten._embedding_bag_per_sample_weights_backward(
        x.to(W.dtype).contiguous(), W, indices, bags.offsets, bags.ids, 0, -1)


def _decode(values: Tensor, indices: Tensor, W: Tensor, bags: Bags) -> Tensor:
    """`out[b] = sum over e in bag b of values[e] * W[indices[e]]`, `[n_bags, d]`."""
    return F.embedding_bag(indices, W, bags.offsets, per_sample_weights=values.to(W.dtype), mode="sum")


def _scatter_outer(coef: Tensor, indices: Tensor, x: Tensor, bags: Bags, n_rows: int) -> Tensor:
    """`out[r] = sum over e with indices[e] == r of coef[e] * x[bags.ids[e]]`: a [n_rows, d] gradient."""
    s = torch.sparse_coo_tensor(torch.stack([indices, bags.ids]), coef.to(x.dtype), (n_rows, len(x)),
                                check_invariants=False)
    return torch.sparse.mm(s, x)  # [n_rows, d]


class BagDecode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values: Tensor, indices: Tensor, W: Tensor, bags: Bags) -> Tensor:  # [E], [E], [d_sae, d]
        ctx.save_for_backward(values, indices, W, *bags)
        return _decode(values, indices, W, bags)  # [n_bags, d]

    @staticmethod
    def backward(ctx, grad: Tensor):  # grad [n_bags, d]
        values, indices, W, *bags = ctx.saved_tensors
        bags, grad = Bags(*bags), grad.contiguous()
        g_values = _gather_dot(grad, W, indices, bags) if ctx.needs_input_grad[0] else None
        g_W = _scatter_outer(values, indices, grad, bags, W.shape[0]) if ctx.needs_input_grad[2] else None
        return g_values, None, g_W, None


class BagGatherDot(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, W: Tensor, indices: Tensor, bags: Bags) -> Tensor:  # [n_bags, d], [d_sae, d], [E]
        ctx.save_for_backward(x, W, indices, *bags)
        return _gather_dot(x, W, indices, bags)  # [E]

    @staticmethod
    def backward(ctx, grad: Tensor):  # grad [E]
        x, W, indices, *bags = ctx.saved_tensors
        bags, grad = Bags(*bags), grad.contiguous()
        g_x = _decode(grad, indices, W, bags) if ctx.needs_input_grad[0] else None
        g_W = _scatter_outer(grad, indices, x, bags, W.shape[0]) if ctx.needs_input_grad[1] else None
        return g_x, g_W, None, None


def bag_decode(values: Tensor, indices: Tensor, W_dec: Tensor, bags: Bags) -> Tensor:
    """Decode flat entries into bags: `[E]` values at `[E]` latent indices -> `[n_bags, d_in]` (no bias)."""
    return BagDecode.apply(values, indices, W_dec, bags)


def sparse_decode(values: Tensor, indices: Tensor, W_dec: Tensor) -> Tensor:
    """Decode k active latents per row: `[N, k]` values at `[N, k]` indices -> `[N, d_in]` (no bias)."""
    return bag_decode(values.reshape(-1), indices.reshape(-1), W_dec, Bags.uniform(*indices.shape, indices.device))


def gather_dot(x: Tensor, W: Tensor, indices: Tensor) -> Tensor:
    """`x[n] . W[indices[n, j]]` for `x [N, d]`, `W [rows, d]`, `indices [N, k]` -> `[N, k]`."""
    bags = Bags.uniform(*indices.shape, indices.device)
    return BagGatherDot.apply(x, W, indices.reshape(-1), bags).view(indices.shape)


def dense_decode(values: Tensor, indices: Tensor, W_dec: Tensor) -> Tensor:
    """The naive reference: scatter into a dense `[N, d_sae]` matrix and multiply."""
    dense = values.new_zeros(len(values), W_dec.shape[0]).scatter(1, indices, values)
    return dense @ W_dec
