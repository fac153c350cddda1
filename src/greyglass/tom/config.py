"""Settings and results of `greyglass tom`, as typed records.

Kept free of torch so that `greyglass --help` and the report read them cheaply; the work is in
`behaviour.py` (answers), `represent.py` (probes per layer and head), `intervene.py`
(steering) and `run.py` (the run folder).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..behaviour.formats import PromptFormat
from ..config import check_choice, check_positive
from ..errors import GreyglassError
from ..probes.config import PROBE_KINDS, ProbeKind
from ..stats import Estimate


@dataclass(frozen=True)
class TomConfig:
    n_stories: int = 520
    """Stories generated (each told in a true-belief and a false-belief version); at least two per template."""
    templates: str | None = None
    """A scenario template file (JSON, as greyglass/tom/data/templates.json); default: the bundled templates."""
    prompt: PromptFormat = field(default_factory=PromptFormat)
    layer_step: int = 1
    """Probe every n-th layer (the last layer is always included)."""
    kind: ProbeKind = "logistic"
    """Probe kind: logistic, mass_mean, mass_mean_iid, or pca."""
    test_fraction: float = 0.25
    """Fraction of stories held out: the probes' test set and the steering's stories."""
    head_layers: int = 2
    """Per-head probes in this many layers where the belief probe does best on validation stories (0: none)."""
    steer_coef: float = 0.5
    """Steering strength, in typical residual norms at the probe's layer; applied with both signs."""
    batch_size: int = 16
    """Prompts or texts per forward pass."""
    n_bootstrap: int = 1000
    """Bootstrap resamples for the 95 percent intervals (clustered by story)."""
    seed: int = 0
    """Seed for the stories, the split, the random steering direction and the bootstrap."""

    def __post_init__(self) -> None:
        check_choice("TomConfig", "kind", self.kind, PROBE_KINDS)
        for name in ("n_stories", "layer_step", "batch_size", "n_bootstrap", "steer_coef"):
            check_positive("TomConfig", name, getattr(self, name))
        if not 0 < self.test_fraction < 0.5:
            raise GreyglassError(f"TomConfig.test_fraction must be between 0 and 0.5, got {self.test_fraction}")
        if self.head_layers < 0:
            raise GreyglassError(f"TomConfig.head_layers must be 0 (no head probes) or more, got {self.head_layers}")

    def layer_list(self, n_layers: int) -> list[int]:
        return sorted({*range(0, n_layers, self.layer_step), n_layers - 1})


@dataclass(frozen=True)
class AnswerAccuracy:
    """How often the model's likelier answer to one question kind in one condition is the right one."""

    question: str
    """belief (what the agent thinks) or reality (what is true)."""
    condition: str
    """true_belief or false_belief."""
    correct: Estimate
    """Share of stories whose right answer is the likelier (both candidate orders averaged), 95% CI over stories."""
    p_correct: Estimate
    """Mean probability on the right answer, renormalised over the two candidates."""
    n: int


@dataclass(frozen=True)
class LayerProbes:
    """Held-out accuracy of the probes at one layer, each with a 95% interval over test stories."""

    layer: int
    site: str
    belief: Estimate
    """Reads whether the statement is true as the agent believes it."""
    reality: Estimate
    """Reads whether the statement is true of the world."""
    shuffled: Estimate
    """The belief probe trained on shuffled labels: what chance looks like."""
    irrelevant: Estimate
    """A probe for the agent's gender: a story feature irrelevant to belief."""
    belief_validation: float
    """The belief probe's accuracy on validation stories (how the head layers are chosen)."""


@dataclass(frozen=True)
class HeadProbes:
    """Held-out accuracy of probes on one attention head's output (the input of the output projection)."""

    layer: int
    head: int
    belief: Estimate
    reality: Estimate


@dataclass(frozen=True)
class SteerChange:
    """How steering moves the right belief answer's probability on held-out stories of one condition."""

    direction: str
    """belief (the belief probe's direction) or random (a random direction, steered with the same norm)."""
    coef: float
    condition: str
    p_correct: Estimate
    """Mean probability on the right belief answer while steering."""
    change: Estimate
    """Steered minus unsteered, paired per story, 95% CI over stories."""
    vs_random: Estimate | None = None
    """For the belief direction: its steered P(right) minus the random direction's (same coef), paired per story."""


@dataclass(frozen=True)
class Depth:
    """The first layer from which a probe is decodable (95% interval above chance) at every later layer probed."""

    layer: int | None
    fraction: float | None
    """layer / n_layers; None when no layer is decodable."""


@dataclass(frozen=True)
class TomResults:
    n_stories: int
    n_templates: int
    n_train: int
    n_validation: int
    n_test: int
    n_layers: int
    prompt_format: str
    behaviour: tuple[AnswerAccuracy, ...]
    verdict: str
    """tracks_belief, reality_only (reality in both conditions), or unclear."""
    layers: tuple[LayerProbes, ...]
    belief_depth: Depth
    reality_depth: Depth
    both_layers: tuple[int, ...]
    """Layers where the belief and the reality probe are both decodable."""
    head_layers: tuple[int, ...]
    heads: tuple[HeadProbes, ...]
    """Sorted by belief accuracy, best first."""
    steer_site: str
    steer_layer: int
    typical_norm: float
    steering: tuple[SteerChange, ...]
    stories: str
    """The generated stories (JSONL), relative to the run folder."""
    probe_plot: str
    behaviour_plot: str
    steer_plot: str
    head_plot: str

    def accuracy(self, question: str, condition: str) -> AnswerAccuracy:
        return next(a for a in self.behaviour if a.question == question and a.condition == condition)
