"""The red-teaming job: `greyglass redteam`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..job import Job, RunOptions
from .config import RedteamConfig, RedteamResults
from .failures import FAILURES
from .report import redteam_section

if TYPE_CHECKING:
    from ..models.lm import LoadedModel


def _redteam(lm: LoadedModel | None, cfg: RedteamConfig, out: Path, opts: RunOptions) -> RedteamResults:
    from .run import run_redteam

    return run_redteam(lm, cfg, out, opts.resume, opts.progress)


REDTEAM = Job(
    name="redteam", command=("redteam",), config=RedteamConfig, results=RedteamResults, run=_redteam,
    section=redteam_section, needs_model=RedteamConfig.uses_model, resume="continue an interrupted run in --out",
    help="red-team a model with a red model's test cases (zero-shot, stochastic few-shot)",
    description="Perez et al. 2022: a red model writes test cases for a failure kind, the target (--model, or "
    "--target-url) answers, classifiers (rules, a judge model, a probe on the target's activations) decide which "
    "answers fail, and the worst failures seed the next round's few-shot prompts. Reports each method's failure "
    "rate with 95% intervals and the diversity of its cases. Failure kinds: "
    + "; ".join(f"{k}: {v.about}" for k, v in FAILURES.items()))

JOBS = (REDTEAM,)
