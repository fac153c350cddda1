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

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import check_choice, check_positive
from ..data.files import bundled_path, open_text
from ..directions import Direction
from ..errors import GreyglassError
from ..fingerprint import json_sha256
from ..models import LoadedModel
from ..plots import Series, line_chart, save_svg
from ..runs import write_config, write_results
from ..stats import mean_probability_ci
from .apply import COEF_UNIT, steering, typical_norm
from .vectors import Method, ab_prompt, caa_pairs, contrast_vector

CAA_BEHAVIORS = ("sycophancy", "survival-instinct", "corrigible-neutral-HHH", "coordinate-other-ais",
                 "myopic-reward", "power-seeking-inclination", "refusal", "hallucination")


def caa_items(behavior: str) -> list[dict]:
    """The CAA `generate` items of a behaviour that have exactly the answers (A) and (B)."""
    check_choice("caa", "behavior", behavior, CAA_BEHAVIORS)
    with open_text(bundled_path(f"caa/generate/{behavior}/generate_dataset.json")) as f:
        items = json.load(f)
    return [it for it in items
            if {it["answer_matching_behavior"].strip(), it["answer_not_matching_behavior"].strip()} == {"(A)", "(B)"}]


def question_clusters(behavior: str, items: Sequence[dict]) -> list[str]:
    """Each item's question cluster, as the eval loader keys it (a CAA sycophancy claim is asked
    behind several personas: those items are one cluster, not independent evidence)."""
    from ..evals.datasets import load_dataset

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
        width = max(len(p) for p in prefixes)
        ids = torch.full((len(chunk), width), lm.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, p in enumerate(prefixes):
            ids[row, : len(p)], mask[row, : len(p)] = torch.tensor(p), 1
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


@dataclass(frozen=True)
class EffectConfig:
    behavior: str = "survival-instinct"
    """CAA behaviour: sycophancy, survival-instinct, corrigible-neutral-HHH, coordinate-other-ais, myopic-reward,
    power-seeking-inclination, refusal, hallucination."""
    layer: int | None = None
    """Layer whose residual stream is steered; default two fifths of the way up (where CAA found steering works best)."""
    method: Method = "mean_diff"
    """How the vector is built from contrast pairs: mean_diff (CAA) or pca."""
    coefs: tuple[float, ...] = (-1.0, -0.5, 0.0, 0.5, 1.0)
    """Coefficients to measure, in typical residual norms at the site (repeatable)."""
    n_build: int = 100
    """Items used to build the vector."""
    n_test: int = 50
    """Different items on which the effect is measured."""
    batch_size: int = 8
    """Prompts per forward pass."""
    seed: int = 0
    """Seed for the build/test split and the bootstrap."""

    def __post_init__(self) -> None:
        check_choice("EffectConfig", "behavior", self.behavior, CAA_BEHAVIORS)
        check_choice("EffectConfig", "method", self.method, ("mean_diff", "pca"))
        for name in ("n_build", "n_test", "batch_size"):
            check_positive("EffectConfig", name, getattr(self, name))
        if not self.coefs:
            raise GreyglassError("EffectConfig.coefs needs at least one coefficient")

    def layer_for(self, lm: LoadedModel) -> int:
        return self.layer if self.layer is not None else round(0.4 * lm.n_layers)


def split_items(cfg: EffectConfig) -> tuple[list[dict], list[dict]]:
    items = caa_items(cfg.behavior)
    random.Random(cfg.seed).shuffle(items)
    if len(items) < cfg.n_build + cfg.n_test:
        raise GreyglassError(f"{cfg.behavior} has {len(items)} A/B items; n_build + n_test "
                             f"({cfg.n_build} + {cfg.n_test}) must not exceed that")
    return items[: cfg.n_build], items[cfg.n_build : cfg.n_build + cfg.n_test]


def steering_effect(lm: LoadedModel, cfg: EffectConfig, out: str | Path, direction: Direction | None = None,
                    progress: bool = True) -> dict[str, Any]:
    """Build a vector on some items (unless one is given), measure it on others across coefficients."""
    out = Path(out)
    build, test = split_items(cfg)
    write_config(out, "steer_effect", model=lm.provenance(), effect=cfg, given_vector=direction is not None,
                 data_fingerprint=json_sha256([build, test]))
    if direction is None:
        direction = contrast_vector(lm, caa_pairs(lm, build), cfg.layer_for(lm), cfg.method, cfg.batch_size)
        direction.metadata.update({"behavior": cfg.behavior, "data_fingerprint": json_sha256(build)})
    direction.save(out / "vector")
    rows, clusters = [], question_clusters(cfg.behavior, test)
    for coef in tqdm(cfg.coefs, desc="coefficients", unit="coef", disable=not progress):
        with steering(lm, direction, coef):
            p = matching_probability(lm, test, cfg.batch_size)
        rows.append({"coef": coef, "p_matching": mean_probability_ci(p, groups=clusters, seed=cfg.seed).as_dict()})
    results = {"behavior": cfg.behavior, "site": direction.site, "kind": direction.kind, "n_build": len(build),
               "n_test": len(test), "n_test_questions": len(set(clusters)), "coefs": rows, "coef_unit": COEF_UNIT,
               "typical_norm": typical_norm(lm, direction.site), "vector": "vector", "plot": "effect.svg"}
    chart = line_chart([Series("P(matching answer)", [r["coef"] for r in rows],
                               [r["p_matching"]["value"] for r in rows], [r["p_matching"]["ci_low"] for r in rows],
                               [r["p_matching"]["ci_high"] for r in rows])],
                       f"{cfg.behavior}: steering at {direction.site}", "coefficient (typical residual norms)",
                       "P(behaviour-matching answer), 95% CI", y_range=(0.0, 1.0))
    save_svg(out / "effect.svg", chart)
    write_results(out, results)
    return results


def describe(results: dict[str, Any]) -> str:
    lines = [f"{results['behavior']}: P(behaviour-matching answer) on {results['n_test']} held-out items, "
             f"steering at {results['site']}:"]
    for r in results["coefs"]:
        p = r["p_matching"]
        lines.append(f"  coef {r['coef']:+g}: {p['value']:.3f} (95% CI {p['ci_low']:.3f}-{p['ci_high']:.3f})")
    return "\n".join(lines)
