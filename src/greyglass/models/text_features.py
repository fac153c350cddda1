"""Features of texts: the residual stream of each text at many layers, in one pass per batch.

Probes (statements), steering vectors (contrast pairs) and the organism's detector (prompts)
all read texts this way. A batch of texts is tokenised, right-padded and run only as far as the deepest layer
asked for (`run_to_sites` stops the forward pass there), so a sweep over every layer costs
one forward pass per batch, not one per layer. The feature is the residual stream after a
layer (`blocks.L.hook_resid_post`) at the text's last token (where a causal model has read
the whole text) or its mean over the text's tokens, leaving out the first
position (BOS, or the attention sink of a model without BOS), as SAE training does. Outlier rows
(`activations.without_outliers`) are not left out: they belong to windows cut mid-document, and a
text read from its start has almost none (docs/sae.md, "Why outlier rows are left out too").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..activations import without_sink
from ..errors import GreyglassError
from .generate import adds_bos
from .hooks import run_to_sites
from .lm import LoadedModel
from .sites import POSITIONS, Position, layer_sites
from .tokens import pad


def text_features(
    lm: LoadedModel,
    texts: Sequence[str],
    layers: Sequence[int],
    position: Position = "last",
    batch_size: int = 32,
    progress: bool = False,
) -> Tensor:  # [n, len(layers), d_model]
    """Residual-stream features of each text at each layer (float32, on the CPU)."""
    if position not in POSITIONS:
        raise GreyglassError(f"position must be one of {', '.join(POSITIONS)}, got {position!r}")
    sites = layer_sites(layers)
    for s in sites:
        lm.site(s)  # range-checks each layer with a clear error
    ids = [lm.tokenizer(t, add_special_tokens=adds_bos(lm, t)).input_ids for t in texts]
    order = sorted(range(len(texts)), key=lambda i: len(ids[i]))  # similar lengths batch together
    out = torch.empty(len(texts), len(layers), lm.d_model)
    starts = range(0, len(order), batch_size)
    for start in tqdm(starts, desc="features", unit="batch", disable=not progress):
        idx = order[start : start + batch_size]
        batch, mask = pad([ids[i] for i in idx], lm.tokenizer.pad_token_id)
        acts = run_to_sites(lm, batch.to(lm.device), sites, attention_mask=mask.to(lm.device))
        stacked = torch.stack([acts[s] for s in sites], dim=1).float().cpu()  # [B, L, T, d]
        out[idx] = _pool(stacked, mask, position)
    return out


def _pool(acts: Tensor, mask: Tensor, position: Position) -> Tensor:
    """acts [B, L, T, d], mask [B, T] -> [B, L, d]."""
    lengths = mask.sum(1)  # [B]
    if position == "last":
        return acts[torch.arange(len(acts)), :, lengths - 1]
    # The first position is BOS, or without one the attention sink (SmolLM2: ~100x the norm of
    # the rest): no statement content, and it would dominate the mean.
    keep = without_sink(mask.bool()).float()
    keep = keep / keep.sum(1, keepdim=True).clamp_min(1)
    return torch.einsum("bltd,bt->bld", acts, keep)
