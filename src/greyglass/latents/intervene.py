"""Setting one SAE latent: clamp it to a value, or add its decoder row, at its site.

`add`:   x + value * W_dec[i]                 at every position
`clamp`: x + (value - a_i(x)) * W_dec[i]     where a_i(x) is the latent's own activation,
         so the latent reads `value` everywhere and the rest of x (including the SAE's error)
         is untouched.
The effect is measured as the probability the model gives the concept's target tokens as
the next token, averaged over a set of neutral prompts, for each value, with a bootstrap
interval over prompts that is never zero-width (`mean_probability_ci`).

`run_steer_feature` is `greyglass steer-feature`: generations side by side and the effect curve
in a run folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor

from ..errors import GreyglassError
from ..models.generate import reply
from ..models.hooks import replacing
from ..models.lm import LoadedModel
from ..plots import Series, line_chart, save_svg
from ..runs import write_config, write_results
from ..stats import mean_probability_ci
from ..steer.config import Comparison
from .concept import load_concept
from .config import SteerFeatureConfig, SteerFeatureResults, SteerMode, TargetProbability
from ..sae.io import load_sae
from ..sae.model import SparseAutoencoder

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
def latent_steering(lm: LoadedModel, sae: SparseAutoencoder, latent: int, value: float, mode: SteerMode = "clamp") -> Iterator[None]:
    """Within the block, latent `latent` is clamped to (or has added) `value` at the SAE's site."""
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


def latent_effect(lm: LoadedModel, sae: SparseAutoencoder, latent: int, values: tuple[float, ...] | list[float], words,
                  mode: SteerMode = "clamp", prompts: tuple[str, ...] | list[str] = DEFAULT_PROMPTS,
                  ) -> tuple[TargetProbability, ...]:
    """Mean target-token probability (with a 95% interval over prompts) at each steering value."""
    ids = target_ids(lm, words)
    rows = []
    for v in values:
        with latent_steering(lm, sae, latent, v, mode):
            p = target_probability(lm, prompts, ids)
        rows.append(TargetProbability(v, mean_probability_ci(p), tuple(round(x, 6) for x in p)))
    return tuple(rows)


def run_steer_feature(lm: LoadedModel, cfg: SteerFeatureConfig, out: str | Path) -> SteerFeatureResults:
    """`greyglass steer-feature`: greedy replies without and with the latent steered, and the target-word
    probability across values, into a run folder."""
    sae = load_sae(cfg.sae)
    words = cfg.target_word or load_concept(cfg.concept).target_words
    write_config(out, "steer_feature", model=lm.provenance(), config=cfg)
    generations = []
    for prompt in cfg.prompt:
        baseline = reply(lm, prompt, cfg.max_new_tokens)
        with latent_steering(lm, sae, cfg.latent, cfg.value, cfg.mode):
            generations.append(Comparison(prompt, baseline, reply(lm, prompt, cfg.max_new_tokens)))
    baseline = mean_probability_ci(target_probability(lm, DEFAULT_PROMPTS, target_ids(lm, words)))
    effect = latent_effect(lm, sae, cfg.latent, cfg.value_list(), words, cfg.mode)
    results = SteerFeatureResults(
        latent=cfg.latent, site=sae.cfg.hook_name, mode=cfg.mode, value=cfg.value, target_words=tuple(words),
        generations=tuple(generations), n_prompts=len(DEFAULT_PROMPTS), baseline_p_target=baseline, effect=effect,
        plot="effect.svg")
    chart = line_chart([Series("P(next token is a target word)", [r.value for r in effect],
                               [r.p_target.value for r in effect], [r.p_target.lo for r in effect],
                               [r.p_target.hi for r in effect])],
                       f"{cfg.mode} latent {cfg.latent} at {sae.cfg.hook_name}", f"{cfg.mode} value",
                       "P(target word next), 95% CI")
    save_svg(Path(out) / results.plot, chart)
    write_results(out, results)
    return results
