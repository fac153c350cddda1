"""Texts -> SAE latents, and the latents of a batch of windows.

The feature statistics read whole windows of activations (`greyglass.activations`, from the
model on the fly or from a store), so they can show each token's neighbours; `encode_batch`
turns a batch of them into latents. Each window's first position (BOS, or the attention-sink
token) and any other outlier row (`activations.without_outliers`) are masked out: their
activations would fill every latent's top list. Text -> latents (`text_latents`, the browser's
per-token view, concept search) leaves out the same positions, for models with or without BOS.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..activations import without_outliers, without_sink
from ..models.hooks import run_to_sites
from ..models.lm import LoadedModel
from ..models.tokens import pad


def encode_batch(sae, acts: Tensor, mask: Tensor) -> Tensor:
    """The SAE's latents `[B, T, d_sae]` of activations `acts [B, T, d]`, zero where `mask [B, T]` is off."""
    B, T, d = acts.shape
    with torch.inference_mode():
        lat = sae.encode(acts.reshape(B * T, d).to(sae.W_dec.device, sae.W_dec.dtype)).float().cpu()
    return lat.reshape(B, T, -1) * mask[..., None]


def sequence_latents(lm: LoadedModel, sae, encoded: list[list[int]]) -> tuple[Tensor, Tensor]:
    """Latents at every position of token-id lists, run as one right-padded batch.

    Returns `(latents [B, T, d_sae], counted [B, T])`; latents are zero where `counted` is off:
    at padding, at each sequence's first position, the attention sink (BOS, or without one
    the first token), and at outlier rows, which the SAE never saw in training (`Window.is_sink`,
    `activations.without_outliers`).
    """
    site = lm.site(sae.cfg.hook_name).name
    ids, mask = pad(encoded, lm.tokenizer.pad_token_id)  # right padding: causal attention keeps real tokens unaffected
    acts = run_to_sites(lm, ids.to(lm.device), [site], attention_mask=mask.to(lm.device))[site].float().cpu()
    counted = without_outliers([acts], without_sink(mask.bool()))
    return encode_batch(sae, acts, counted), counted


def text_latents(lm: LoadedModel, sae, texts: list[str], batch_size: int = 16) -> Tensor:
    """Each text's maximum activation of every latent over its tokens -> `[n_texts, d_sae]`.

    The first position (BOS, or the first token without one) is left out, so a text of one
    token, all sink, gets zeros.
    """
    out = [sequence_latents(lm, sae, [lm.tokenizer(t).input_ids for t in texts[lo:lo + batch_size]])[0].amax(dim=1)
           for lo in range(0, len(texts), batch_size)]
    return torch.cat(out)
