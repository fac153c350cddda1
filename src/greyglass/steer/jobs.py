"""The steering jobs: `greyglass steer`, `steer-vector` and `steer-effect`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..job import Job, RunOptions
from .config import EffectConfig, EffectResults, SteerConfig, SteerResults, VectorConfig, VectorResults
from .report import effect_section, steer_section, vector_section

if TYPE_CHECKING:
    from ..models.lm import LoadedModel


def _steer(lm: LoadedModel, cfg: SteerConfig, out: Path, opts: RunOptions) -> SteerResults:
    from .apply import run_steer

    return run_steer(lm, cfg, out)


def _vector(lm: LoadedModel, cfg: VectorConfig, out: Path, opts: RunOptions) -> VectorResults:
    from .vectors import run_vector

    return run_vector(lm, cfg, out)


def _effect(lm: LoadedModel, cfg: EffectConfig, out: Path, opts: RunOptions) -> EffectResults:
    from .effect import steering_effect

    return steering_effect(lm, cfg, out, opts.progress)


STEER = Job(
    name="steer", command=("steer",), config=SteerConfig, results=SteerResults, run=_steer, section=steer_section,
    help="baseline and steered generations side by side",
    description="Add a saved direction (steering vector or probe) to the residual stream, COEF typical residual "
    "norms long, and compare greedy generations with and without it.")
STEER_VECTOR = Job(
    name="steer_vector", command=("steer-vector",), config=VectorConfig, results=VectorResults, run=_vector,
    section=vector_section, help="build a steering vector from contrast pairs or CAA items",
    description="Mean difference (CAA) or PCA of residual-stream differences between positive and negative texts. "
    "The run folder is also the direction folder that steer --vector reads.")
STEER_EFFECT = Job(
    name="steer_effect", command=("steer-effect",), config=EffectConfig, results=EffectResults, run=_effect,
    section=effect_section, help="measure a steering vector's effect on held-out CAA A/B items",
    description="Build a CAA vector on some items (or take --vector) and measure P(behaviour-matching answer) on "
    "other items across coefficients, with 95% CIs and a plot.")

JOBS = (STEER, STEER_VECTOR, STEER_EFFECT)
