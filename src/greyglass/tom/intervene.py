"""Steering along the belief direction: does it move the model's belief answers?

The belief probe of one layer (the one whose probe does best on validation stories) is added
to the residual stream there with `steer.apply.steering` (coef × typical residual norm × unit
direction, at every position) while the model answers the belief question of held-out stories,
with both signs of `coef`. The control is a random direction, steered with the same coefficient
and so the same added norm. The effect is the change in the mean probability on the right
belief answer, paired per story with the unsteered run, with a 95% interval that resamples
stories (`behaviour.scorers.paired_difference`); the belief direction's steered answers are also
compared with the random direction's, story by story, so an effect is claimed only where the two
differ, not merely where the random direction's interval happens to be wider.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..behaviour.formats import PromptFormat
from ..behaviour.scorers import paired_difference, summarise
from ..directions import Direction
from ..models.lm import LoadedModel
from ..steer.apply import steering
from .answers import answer_records
from .config import SteerChange
from .stories import CONDITIONS, Story


def random_direction(like: Direction, seed: int) -> Direction:
    """A direction drawn uniformly on the sphere at `like`'s site (steering normalises it to the same norm)."""
    g = torch.Generator().manual_seed(seed)
    return Direction(torch.randn(like.d_model, generator=g), like.site, "random", metadata={"seed": seed})


def steering_changes(lm: LoadedModel, belief: Direction, stories: Sequence[Story],
                     baseline: dict[str, list[dict[str, Any]]], prompt: PromptFormat, coef: float, batch_size: int,
                     seed: int, progress: bool = False) -> tuple[SteerChange, ...]:
    """For the belief and a random direction, each sign of `coef` and each condition: the steered belief
    answers against `baseline` (condition -> unsteered records of the same stories)."""
    steered: dict[tuple[str, float, str], list[dict[str, Any]]] = {}
    for name, direction in (("belief", belief), ("random", random_direction(belief, seed))):
        for c in (-coef, coef):
            for condition in CONDITIONS:
                with steering(lm, direction, c):
                    steered[name, c, condition] = answer_records(lm, stories, "belief", condition, prompt, batch_size,
                                                                 progress)
    rows = []
    for (name, c, condition), records in steered.items():
        vs_random = (_paired(records, steered["random", c, condition], seed) if name == "belief" else None)
        rows.append(SteerChange(name, c, condition, summarise(records, seed).p_match,
                                _paired(records, baseline[condition], seed), vs_random))
    return tuple(rows)


def _paired(first: list[dict[str, Any]], second: list[dict[str, Any]], seed: int):
    """Mean per-story difference of p_match (first - second) with its 95% interval over stories."""
    other = {r["cluster"]: r for r in second}
    return paired_difference([(r, other[r["cluster"]]) for r in first], seed).p_match
