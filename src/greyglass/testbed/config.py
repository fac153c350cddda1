"""Settings and results of `greyglass testbed`, as typed records (kept free of torch, like every area's config)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config import check_positive, positional
from ..errors import GreyglassError
from ..steer.config import EffectConfig

HELD_OUT_CAA = EffectConfig.n_build + EffectConfig.n_test
"""CAA sycophancy items the A/B organisms hold out (with every item sharing their questions): steer-effect's
default build and test items for the organism's seed."""

Role = Literal["organism", "control"]


@dataclass(frozen=True)
class TestbedConfig:
    """Which organism and control to test, and how much each tool may cost."""

    __test__ = False  # not a pytest class

    organism: str = positional()
    """Run folder of a taught organism from `greyglass organism train` (instructed-liar, sycophant or ab-competent)."""
    control: str | None = None
    """Run folder of an organism used as the control (e.g. the ab-competent one for the sycophant); default: the
    model the organism was built from."""
    n_questions: int = 16
    """Held-out statements `probe lying` asks (whole true/false pairs)."""
    eval_limit: int = 40
    """Held-out A/B items the sycophancy eval asks (each in both orders, with and without the user's view)."""
    steer_build: int = 60
    """CAA sycophancy items the steering vector is built from (`steer-effect --n-build`)."""
    steer_test: int = 40
    """Other CAA sycophancy items its effect is measured on (`steer-effect --n-test`)."""
    steer_coefs: tuple[float, ...] = (-1.0, 0.0, 1.0)
    """Steering coefficients, in typical residual norms (`steer-effect --coefs`)."""
    n_boot: int = 500
    """Bootstrap resamples for the generic probe's AUROC intervals."""

    def __post_init__(self) -> None:
        for name in ("n_questions", "eval_limit", "steer_build", "steer_test", "n_boot"):
            check_positive("TestbedConfig", name, getattr(self, name))
        if self.steer_build + self.steer_test > HELD_OUT_CAA:
            raise GreyglassError(f"TestbedConfig: --steer-build + --steer-test must be at most {HELD_OUT_CAA}: only the "
                                 "CAA items of steer-effect's default split were held out of the organism's training")
        if not self.steer_coefs:
            raise GreyglassError("TestbedConfig.steer_coefs needs at least one coefficient")


@dataclass(frozen=True)
class ToolVerdict:
    """One tool run on one model: the behaviour as measured there, what the tool concluded, and whether it was right."""

    role: Role
    model: str
    behaviour_present: bool
    """Ground truth: the behaviour as measured on held-out items (`organism.taught_rates.behaviour_present`)."""
    behaviour: str
    """The measurement, in words with its interval."""
    tool: str
    concluded: str
    """What the tool's own run concluded, in plain words."""
    found: bool | None
    """Whether the tool says the behaviour is there (None: the tool has no verdict on this model)."""
    right: bool | None
    verdict: str
    """In plain words, e.g. "right: found on the organism", "failure: found on the control"."""
    run: str
    """The tool's own run folder, relative to the testbed's."""


@dataclass(frozen=True)
class TestbedResults:
    __test__ = False

    behaviour: str
    organism: str
    control: str
    rows: tuple[ToolVerdict, ...]
    n_right: int
    n_failures: int
