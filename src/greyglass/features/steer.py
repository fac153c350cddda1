"""Feature steering: clamp a latent to a value, or add its decoder row, at its site.

`add`:   x + value * W_dec[i]                 at every position
`clamp`: x + (value - a_i(x)) * W_dec[i]     where a_i(x) is the latent's own activation,
         so the latent reads `value` everywhere and the rest of x (including the SAE's error)
         is untouched.
The effect is measured as the probability the model gives the concept's target tokens as
the next token, averaged over a set of neutral prompts, for each value, with a bootstrap
interval over prompts that is never zero-width (`mean_probability_ci`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import Tensor

from ..errors import GreyglassError
from ..models import LoadedModel, replacing
from ..stats import mean_probability_ci
from ..sae.model import SparseAutoencoder

SteerMode = Literal["clamp", "add"]

DEFAULT_PROMPTS = (
    "My favourite place to visit is",
    "Yesterday I went for a walk and saw",
    "The most interesting thing about the city is",
    "Here is a short story:",
    "I was thinking about",
    "The picture on the wall shows",
    "When we arrived, the first thing we noticed was",
    "Let me tell you about",
)


def latent_fn(sae: SparseAutoencoder, latent: int, value: float, mode: SteerMode) -> Callable[[Tensor], Tensor]:
    """The site function that clamps or adds latent `latent`."""
    if not 0 <= latent < sae.cfg.d_sae:
        raise GreyglassError(f"latent {latent} is out of range; this SAE has latents 0 to {sae.cfg.d_sae - 1}")
    if mode not in ("clamp", "add"):
        raise GreyglassError(f"steering mode {mode!r} is not allowed; choose clamp or add")
    row = sae.W_dec[latent].detach()  # [d_in]

    def fn(x: Tensor) -> Tensor:  # [B, T, d]
        d = row.to(x.device, x.dtype)
        if mode == "add":
            return x + value * d
        with torch.inference_mode():
            a = sae.encode(x.reshape(-1, x.shape[-1]).to(row.device, row.dtype))[:, latent]  # [B*T], on the SAE's device
        return x + (value - a.reshape(x.shape[:-1]).to(x.device, x.dtype))[..., None] * d

    return fn


@contextmanager
def steering(lm: LoadedModel, sae: SparseAutoencoder, latent: int, value: float, mode: SteerMode = "clamp") -> Iterator[None]:
    with replacing(lm, {sae.cfg.hook_name: latent_fn(sae, latent, value, mode)}):
        yield


def target_ids(lm: LoadedModel, words: tuple[str, ...] | list[str]) -> list[int]:
    """The first token of each target word (distinct)."""
    ids = {lm.tokenizer(w, add_special_tokens=False).input_ids[0] for w in words if w}
    if not ids:
        raise GreyglassError("no target words to measure; give --target-word or a concept with target_words")
    return sorted(ids)


def target_probability(lm: LoadedModel, prompts: tuple[str, ...] | list[str], ids: list[int]) -> list[float]:
    """For each prompt, the next-token probability mass on `ids` (plain text, no chat template)."""
    out = []
    with torch.inference_mode():
        for prompt in prompts:
            x = lm.tokenizer(prompt, return_tensors="pt").input_ids.to(lm.device)
            probs = lm.model(input_ids=x, use_cache=False).logits[0, -1].float().softmax(-1)
            out.append(float(probs[ids].sum()))
    return out


def steering_effect(lm: LoadedModel, sae: SparseAutoencoder, latent: int, values: list[float], words, mode: SteerMode = "clamp",
                    prompts: tuple[str, ...] | list[str] = DEFAULT_PROMPTS) -> list[dict]:
    """Mean target-token probability (with a 95% interval over prompts) at each steering value."""
    ids = target_ids(lm, words)
    rows = []
    for v in values:
        with steering(lm, sae, latent, v, mode):
            p = target_probability(lm, prompts, ids)
        rows.append({"value": v, "p_target": mean_probability_ci(p).as_dict(), "per_prompt": [round(x, 6) for x in p]})
    return rows


def effect_svg(rows: list[dict], width: int = 420, height: int = 180) -> str:
    """A line plot of the target probability against the steering value, inline SVG."""
    xs = [r["value"] for r in rows]
    ys = [r["p_target"]["value"] for r in rows]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y1 = max(max(r["p_target"]["ci_high"] for r in rows), 1e-9)
    px = lambda x: 40 + (x - x0) / (x1 - x0) * (width - 60)
    py = lambda y: height - 25 - y / y1 * (height - 40)
    line = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys))
    dots = "".join(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="#b5432f"><title>value {x:g}: {y:.4f}</title></circle>'
                   for x, y in zip(xs, ys))
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="steering effect">'
            f'<polyline points="{line}" fill="none" stroke="#b5432f" stroke-width="2"/>{dots}'
            f'<text x="40" y="{height - 5}" font-size="11">{x0:g}</text>'
            f'<text x="{width - 20}" y="{height - 5}" font-size="11" text-anchor="end">{x1:g} (steering value)</text>'
            f'<text x="2" y="12" font-size="11">p={y1:.3g}</text></svg>')
