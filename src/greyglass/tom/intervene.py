"""Steering along the belief direction: does it move the model's belief answers?

The belief probe of one layer (the one whose probe does best on validation stories) is added
to the residual stream there with `steer.apply.steering` (coef × typical residual norm × unit
direction, at every position) while the model answers the belief question of held-out stories,
with both signs of `coef`. The control is a random direction, steered with the same coefficient
and so the same added norm. The effect is the change in the mean probability on the right
belief answer, paired per story with the unsteered run, with a 95% interval that resamples
stories (`behaviour.scorers.paired_difference`).
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
    rows = []
    for name, direction in (("belief", belief), ("random", random_direction(belief, seed))):
        for c in (-coef, coef):
            for condition in CONDITIONS:
                with steering(lm, direction, c):
                    steered = answer_records(lm, stories, "belief", condition, prompt, batch_size, progress)
                before = {r["cluster"]: r for r in baseline[condition]}
                change = paired_difference([(r, before[r["cluster"]]) for r in steered], seed).p_match
                rows.append(SteerChange(name, c, condition, summarise(steered, seed).p_match, change))
    return tuple(rows)
