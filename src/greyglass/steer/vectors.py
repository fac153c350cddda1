"""Steering vectors: from contrast pairs (CAA mean difference or PCA), a saved probe, or an SAE latent.

Every vector is a `Direction` at a residual-stream site, so it saves, loads and steers the same
way whatever made it:

- `contrast_vector(lm, pairs, layer, method)`: the residual stream at each text's last token,
  positive minus negative. `mean_diff` is the mean of the differences (Rimsky et al.'s CAA);
  `pca` is the first principal component of the differences (repeng), scaled to the mean
  projected difference so coefficient 1 means "one typical pair's worth".
- `caa_pairs(lm, items)`: CAA A/B items as contrast pairs, the prompt followed by "(" and the
  behaviour-matching letter versus the other letter; the vector is read at the letter.
- a saved probe: `Direction.load(folder)`; steer along `direction.model_space()`.
- `sae_latent_direction(decoder_row, site, latent)`: the hook for SAE latents, a decoder row
  `W_dec[latent]  # [d_model]` turned into a Direction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from ..directions import Direction
from ..errors import GreyglassError
from ..models import LoadedModel
from ..models.generate import user_prompt
from ..probes.features import layer_sites, text_features
from ..probes.fit import fit_probe

Method = Literal["mean_diff", "pca"]


class ContrastPair(NamedTuple):
    """Two texts that differ only in the behaviour to steer: `positive` shows it, `negative` does not."""

    positive: str
    negative: str


def contrast_vector(lm: LoadedModel, pairs: Sequence[ContrastPair], layer: int, method: Method = "mean_diff",
                    batch_size: int = 16, progress: bool = False) -> Direction:
    """A steering vector at `blocks.{layer}.hook_resid_post` from contrast pairs."""
    if len(pairs) < 2:
        raise GreyglassError(f"a steering vector needs at least 2 contrast pairs, got {len(pairs)}")
    if method not in ("mean_diff", "pca"):
        raise GreyglassError(f"unknown steering-vector method {method!r}; choose mean_diff or pca")
    site = layer_sites([layer])[0]
    texts = [p.positive for p in pairs] + [p.negative for p in pairs]
    x = text_features(lm, texts, [layer], "last", batch_size, progress)[:, 0]  # [2n, d]
    y = torch.cat([torch.ones(len(pairs)), torch.zeros(len(pairs))]).long()
    groups = [str(i) for i in range(len(pairs))] * 2
    # The mass-mean probe's vector is exactly the mean positive-minus-negative difference.
    probe = fit_probe("mass_mean" if method == "mean_diff" else "pca", x, y, site, groups)
    vector = probe.vector
    if method == "pca":
        diffs = x[: len(pairs)] - x[len(pairs):]  # [n, d]
        vector = vector * (diffs @ vector).mean()
    return Direction(vector, site, method, metadata={"model": lm.name, "model_sha256": lm.sha256, "layer": layer,
                                                     "n_pairs": len(pairs), "norm": float(vector.norm())})


def caa_pairs(lm: LoadedModel, items: Sequence[dict]) -> list[ContrastPair]:
    """CAA A/B items -> pairs of (prompt + '(' + matching letter, prompt + '(' + other letter)."""
    out = []
    for item in items:
        prompt = ab_prompt(lm, item["question"])
        out.append(ContrastPair(prompt + item["answer_matching_behavior"].strip()[:2],
                                prompt + item["answer_not_matching_behavior"].strip()[:2]))
    return out


def ab_prompt(lm: LoadedModel, question: str) -> str:
    """The question as the model expects it, ready for the answer '(A)' or '(B)' to follow."""
    if lm.is_chat:
        return user_prompt(lm, question)
    return f"Question: {question}\n\nAnswer: "


def sae_latent_direction(decoder_row: Tensor, site: str, latent: int, sae: str = "") -> Direction:
    """Hook for SAE latents: the decoder row `W_dec[latent]  # [d_model]` of an SAE at `site` as a Direction."""
    if decoder_row.ndim != 1:
        raise GreyglassError(f"an SAE decoder row must be 1-D [d_model], got shape {tuple(decoder_row.shape)}")
    return Direction(decoder_row.detach().float().clone(), site, "sae_latent", metadata={"latent": latent, "sae": sae})
