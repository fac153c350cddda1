"""Frequency-aware sparsity: latents that fire often cost less to activate than rare ones.

An SAE that pays the same for every active latent prefers one rare latent that absorbs a
compositional case ("short word starting with S") over two common ones ("starts with S" +
"short"). Charging each latent a cost that falls with its firing rate p_i (a description
length: a latent used often is cheap to name) tilts it toward the composition. A floor keeps
every latent costly, so the dictionary cannot collapse to a dense basis.

    rel_i = p_i * d_in                                  # firing rate relative to 1/d_in
    neglog: w_i = -log p_i / log d_in = 1 - log(rel_i) / log(d_in)   (1 at p = 1/d_in, 0 at p = 1)
    power:  w_i = rel_i ** -power                                     (1 at p = 1/d_in)
    w_i = clip(w_i, floor, ceiling)

`1/d_in` is the reference because a dense basis of the input would have d_in latents each
firing on about every token; a latent at that rate costs 1, the usual L0 cost.
p_i is an exponential moving average of the per-batch firing rate, kept in the SAE as a
buffer (so a checkpoint resumes it exactly). How the weights enter the loss:
- jumprelu: the L0 penalty counts latent i as w_i (`weighted_l0`);
- topk / batchtopk: latents are *selected* by `pre_i - scale * w_i`, but the values that
  reconstruct are the real pre-activations (`selection_scores`).
Inference uses the same rule (`model`): TopK selects by `pre - cost` there too, BatchTopK's
threshold is on `pre - cost`; the firing rates are saved with the SAE (`io`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .config import FreqCost


def cost_weights(rates: Tensor, d_in: int, form: FreqCost, power: float = 0.5, floor: float = 0.25,
                 ceiling: float = 4.0) -> Tensor:
    """Per-latent cost weights `[d_sae]` from firing rates `[d_sae]` (see the module docstring)."""
    rel = rates.clamp(min=1e-12) * d_in
    if form == "neglog":
        w = 1 - rel.log() / math.log(d_in)
    elif form == "power":
        w = rel.pow(-power)
    else:
        w = torch.ones_like(rates)
    return w.clamp(min=floor, max=ceiling)


@torch.no_grad()
def update_rates(rates: Tensor, fired_per_latent: Tensor, n_tokens: int, decay: float) -> None:
    """In place: rates <- decay * rates + (1 - decay) * (this batch's firing rate)."""
    rates.mul_(decay).add_(fired_per_latent.to(rates.dtype) / n_tokens, alpha=1 - decay)


def selection_scores(pre: Tensor, weights: Tensor, scale: float) -> Tensor:
    """TopK / BatchTopK: rank latents by pre-activation minus their cost, `[N, d_sae]`."""
    return pre - scale * weights
