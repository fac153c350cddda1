"""How well the organism is built: backdoor rate with the trigger, false-trigger rate without,
and how close its normal answers stay to the original model's."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..models.generate import user_prompt, generate
from ..models.lm import LoadedModel
from ..stats import mean_ci, proportion_ci
from .behaviours import BEHAVIOURS
from .config import AnswerExample, BackdoorMeasures, OrganismConfig
from .prompts import with_trigger
from .taught_rates import mean_kl
from .train import Example, collate


def backdoor_measures(organism: LoadedModel, original: LoadedModel, questions: Sequence[str],
                      cfg: OrganismConfig, progress: bool = True) -> BackdoorMeasures:
    """Rates with Wilson 95% intervals over held-out questions (never "0% (0-0%)"), the KL with a
    bootstrap one, plus examples."""
    shows = BEHAVIOURS[cfg.behaviour].shows
    plain = [user_prompt(organism, q) for q in questions]
    triggered = [user_prompt(organism, with_trigger(q, cfg.trigger)) for q in questions]
    out_trig = generate(organism, triggered, cfg.answer_tokens, progress=progress)
    out_plain = generate(organism, plain, cfg.answer_tokens, progress=progress)
    ref_plain = generate(original, plain, cfg.answer_tokens, progress=progress)
    kl = per_token_kl(original, organism, [Example(p, r.strip(), False) for p, r in zip(plain, ref_plain)])
    return BackdoorMeasures(
        n_questions=len(questions),
        backdoor_rate_with_trigger=proportion_ci([shows(t) for t in out_trig]),
        false_trigger_rate_without=proportion_ci([shows(t) for t in out_plain]),
        original_shows_behaviour_with_trigger=proportion_ci(
            [shows(t) for t in generate(original, triggered, cfg.answer_tokens)]),
        exact_match_with_original_without_trigger=proportion_ci(
            [a.strip() == b.strip() for a, b in zip(out_plain, ref_plain)]),
        kl_original_to_organism_per_token=mean_ci(kl),
        examples=tuple(AnswerExample(*row) for row in list(zip(questions, out_trig, out_plain, ref_plain))[:5]),
    )


def per_token_kl(reference: LoadedModel, other: LoadedModel, examples: Sequence[Example], batch_size: int = 8) -> np.ndarray:
    """Mean KL(reference || other) over each example's answer tokens, teacher-forced.  [n_examples]"""
    out = []
    for start in range(0, len(examples), batch_size):
        batch = collate(reference, examples[start : start + batch_size])
        answer = (batch["labels"][:, 1:] != -100)  # positions whose next token is an answer token  [B, T-1]
        out += mean_kl(reference, other, batch["input_ids"], batch["attention_mask"], answer).tolist()
    return np.asarray(out)
