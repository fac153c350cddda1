"""Measuring a steering vector: how far it moves behaviour on held-out CAA A/B questions.

A vector is built from CAA items of one behaviour (`caa/generate/<behavior>`, Rimsky et al.)
and tested on *other* items of that behaviour. For each coefficient (in typical residual norms
at the site, as for every entry point; see `apply`) the score is the model's probability of
the behaviour-matching answer letter, renormalised over the two letters, averaged over the
test items, with a bootstrap 95% interval that resamples questions (CAA sycophancy asks one
claim behind several personas) and is never zero-width, even when steering saturates every
item at 0 or 1 (`mean_probability_ci`). A vector that works moves this
curve monotonically away from its coefficient-0 (unsteered) value.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..directions import Direction
from ..errors import GreyglassError
from ..fingerprint import json_sha256
from ..models.lm import LoadedModel
from ..models.tokens import pad
from ..plots import Series, line_chart, save_svg
from ..runs import write_config, write_results
from ..stats import mean_probability_ci
from .apply import steering, typical_norm
from .config import COEF_UNIT, CoefEffect, EffectConfig, EffectResults
from .vectors import ab_prompt, caa_items, caa_pairs, contrast_vector


def question_clusters(behavior: str, items: Sequence[dict]) -> list[str]:
    """Each item's question cluster, as the eval loader keys it (a CAA sycophancy claim is asked
    behind several personas: those items are one cluster, not independent evidence)."""
    from ..behaviour.datasets import load_dataset

    clusters = {it.prompt: it.metadata["cluster"] for it in load_dataset(f"caa-{behavior}")}
    return [clusters[it["question"]] for it in items]


def matching_probability(lm: LoadedModel, items: Sequence[dict], batch_size: int = 8) -> np.ndarray:
    """P(matching letter) / (P(A) + P(B)) after the prompt and '(' for each item -> [n]."""
    out = np.empty(len(items))
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        prefixes, pairs = [], []
        for item in chunk:
            prefix, a, b = _letter_tokens(lm, ab_prompt(lm, item["question"]))
            matching_is_a = item["answer_matching_behavior"].strip() == "(A)"
            prefixes.append(prefix)
            pairs.append((a, b) if matching_is_a else (b, a))
        ids, mask = pad(prefixes, lm.tokenizer.pad_token_id)  # [B, T]
        with torch.inference_mode():
            logits = lm.model(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device), use_cache=False).logits
        last = logits[torch.arange(len(chunk)), mask.sum(1) - 1].float().cpu()  # [B, vocab]
        match, other = (torch.tensor([p[k] for p in pairs]) for k in (0, 1))
        two = torch.stack([last[torch.arange(len(chunk)), match], last[torch.arange(len(chunk)), other]], 1)
        out[start : start + len(chunk)] = torch.softmax(two, 1)[:, 0].numpy()
    return out


def _letter_tokens(lm: LoadedModel, prompt: str) -> tuple[list[int], int, int]:
    """(shared prefix ids, id of A, id of B): where '(A' and '(B' first differ after the prompt."""
    a, b = (lm.tokenizer(prompt + f"({letter}").input_ids for letter in "AB")
    k = next(i for i, (u, v) in enumerate(zip(a, b)) if u != v)
    return a[:k], a[k], b[k]


def split_items(cfg: EffectConfig) -> tuple[list[dict], list[dict]]:
    items = caa_items(cfg.behavior)
    random.Random(cfg.seed).shuffle(items)
    if len(items) < cfg.n_build + cfg.n_test:
        raise GreyglassError(f"{cfg.behavior} has {len(items)} A/B items; n_build + n_test "
                             f"({cfg.n_build} + {cfg.n_test}) must not exceed that")
    return items[: cfg.n_build], items[cfg.n_build : cfg.n_build + cfg.n_test]


def steering_effect(lm: LoadedModel, cfg: EffectConfig, out: str | Path, progress: bool = True) -> EffectResults:
    """Build a vector on some items (unless `cfg.vector` names one), measure it on others across coefficients."""
    out = Path(out)
    build, test = split_items(cfg)
    write_config(out, "steer_effect", model=lm.provenance(), config=cfg, data_fingerprint=json_sha256([build, test]))
    if cfg.vector is not None:
        direction = Direction.load(cfg.vector)
    else:
        direction = contrast_vector(lm, caa_pairs(lm, build), cfg.layer_for(lm), cfg.method, cfg.batch_size)
        direction.metadata.update({"behavior": cfg.behavior, "data_fingerprint": json_sha256(build)})
    direction.save(out / "vector")
    rows, clusters = [], question_clusters(cfg.behavior, test)
    for coef in tqdm(cfg.coefs, desc="coefficients", unit="coef", disable=not progress):
        with steering(lm, direction, coef):
            p = matching_probability(lm, test, cfg.batch_size)
        rows.append(CoefEffect(coef, mean_probability_ci(p, groups=clusters, seed=cfg.seed)))
    results = EffectResults(
        behavior=cfg.behavior, site=direction.site, kind=direction.kind, given_vector=cfg.vector is not None,
        n_build=len(build), n_test=len(test), n_test_questions=len(set(clusters)), coefs=tuple(rows),
        coef_unit=COEF_UNIT, typical_norm=typical_norm(lm, direction.site), vector="vector", plot="effect.svg")
    chart = line_chart([Series("P(matching answer)", [r.coef for r in rows], [r.p_matching.value for r in rows],
                               [r.p_matching.lo for r in rows], [r.p_matching.hi for r in rows])],
                       f"{cfg.behavior}: steering at {direction.site}", "coefficient (typical residual norms)",
                       "P(behaviour-matching answer), 95% CI", y_range=(0.0, 1.0))
    save_svg(out / results.plot, chart)
    write_results(out, results)
    return results
