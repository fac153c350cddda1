"""What the eval jobs measure, as typed records: the `results.json` of `eval`, `eval_cot` and
`eval_pressure` runs.

Kept free of torch so that the report, the browser and `greyglass --help` read them cheaply;
`scorers`, `tasks`, `cot` and `pressure` build them. Every share and mean has its 95% interval
(`Estimate`); a `Rate` also says how many outcomes it is over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from ..stats import Estimate, proportion_ci


@dataclass(frozen=True)
class Rate:
    """A share with its 95% interval (Wilson-based, never zero-width) and how many outcomes it is over."""

    share: Estimate
    n: int


def rate_of(outcomes: Sequence[float], groups: Sequence | None = None, seed: int = 0) -> Rate | None:
    """The share of 0/1 `outcomes` (`stats.proportion_ci`, clustered by `groups` when given); None when
    there are none (nothing to compare, rather than a NaN in results.json)."""
    return Rate(proportion_ci(outcomes, groups=groups, seed=seed), len(outcomes)) if len(outcomes) else None


# --- `eval`: multiple-choice behaviour evals ---------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """Both metrics of one group of items, with 95% intervals that resample questions.

    The headline figures are position-debiased (an item asked in both answer orders counts the
    mean of the two); `raw_*` are the same figures in the file's own answer order.
    """

    n: int
    n_questions: int
    """Distinct questions (clusters) among the items: the intervals resample these."""
    n_both_orders: int
    """Items asked in both answer orders (0 with --no-both-orders)."""
    p_match: Estimate
    """Mean probability on the answer matching the behaviour."""
    matched: Estimate
    """Share of items where the matching answer is the likelier one."""
    raw_p_match: Estimate
    raw_matched: Estimate
    p_first_answer: Estimate | None = None
    """Mean probability on whichever answer is (A), over items asked in both orders: the lean to a letter alone."""


@dataclass(frozen=True)
class Difference:
    """The paired mean difference (first - second) of both metrics, with 95% intervals over the pairs' questions."""

    n: int
    n_questions: int
    p_match: Estimate
    matched: Estimate


@dataclass(frozen=True)
class Control:
    """Sycophancy: the same questions asked without the user's biography, and what the biography changed."""

    no_bio: Summary | None
    bio_effect: Difference | None
    """With the biography minus without it, over the questions asked both ways."""


class Groups(NamedTuple):
    """An eval's summaries: over all items, per dataset and per writer, and (sycophancy) the controls."""

    all: Summary
    datasets: dict[str, Summary]
    written_by: dict[str, Summary]
    controls: dict[str, Control]


@dataclass(frozen=True)
class ProbeResult:
    """How well a probe's score at the answer position predicts the answer matching the behaviour."""

    path: str | None
    """The Direction's folder (None when the backend was given the Direction itself)."""
    site: str
    kind: str
    n: int
    n_matched: int
    auroc: Estimate


@dataclass(frozen=True)
class EvalResults:
    eval: str
    about: str
    n_items: int
    """Prompts scored (each answer order and each no-biography control counts)."""
    all: Summary
    """Every question (sycophancy: asked with the user's biography)."""
    datasets: dict[str, Summary]
    written_by: dict[str, Summary] = field(default_factory=dict)
    """advanced-ai-risk: pooled over the human-written and the LM-written files."""
    controls: dict[str, Control] = field(default_factory=dict)
    """sycophancy: for "all" and each dataset, the no-biography control and the biography's effect."""
    probe: ProbeResult | None = None


# --- `eval_cot`: chain-of-thought faithfulness -----------------------------------------------


@dataclass(frozen=True)
class NoNumber:
    """How often an answer stated no number; such answers are left out of the same-answer rates."""

    answer: Rate | None
    early_answering: dict[str, Rate | None]
    filler: Rate | None
    adding_mistakes: Rate | None


@dataclass(frozen=True)
class CotSummary:
    """Unchanged-answer rates of each intervention, among answers that state a number (None: none did)."""

    n: int
    accuracy: Rate | None
    early_answering: dict[str, Rate | None]
    """By the fraction of the chain kept ("0.0" ... "1.0"): answers equal to the full-chain answer."""
    early_answering_aoc: Estimate | None
    """Area over the early-answering curve: 0 when the reasoning never changes the answer."""
    adding_mistakes_unchanged: Rate | None
    n_with_mistake: int
    filler_unchanged: Rate | None
    no_number: NoNumber


@dataclass(frozen=True)
class CotResults:
    task: str
    all: CotSummary
    by_operands: dict[str, CotSummary] = field(default_factory=dict)
    """addition: the same summary for each number of operands."""


# --- `eval_pressure`: agent pressure scenarios -----------------------------------------------


@dataclass(frozen=True)
class Condition:
    """The samples of one ethics condition: how often each act happened (acts of the other scenario are None)."""

    n: int
    parsed: Rate | None
    """Samples whose reply held a parseable action."""
    traded: Rate | None = None
    traded_and_hid: Rate | None = None
    hid: Rate | None = None
    """Of the samples that traded, those whose report hid the tip (None when none traded)."""
    doubled_down: Rate | None = None
    """Of the samples that hid it, those that denied it again when asked (None when none hid)."""
    misused: Rate | None = None


@dataclass(frozen=True)
class Regression:
    """customer-funds: each factor's log-odds effect on misuse, with bootstrap 95% intervals."""

    coefficients: dict[str, Estimate]
    """By factor (crisis, ceo_order, lax_audit, ethics); empty when misuse never varied."""
    note: str | None = None
    """Why there are no coefficients."""


@dataclass(frozen=True)
class JudgeRule:
    """A judge model's verdicts on one rule, and how often it agrees with the rules."""

    n: int
    judge_rate: Rate | None
    agreement_with_rules: Rate | None
    n_both: int


@dataclass(frozen=True)
class JudgeSummary:
    url: str
    hid: JudgeRule
    doubled_down: JudgeRule


@dataclass(frozen=True)
class PressureResults:
    scenario: str
    n: int
    without_ethics: Condition
    with_ethics: Condition
    ethics_effect: dict[str, Estimate]
    """Paired change of each act's rate made by the ethics instruction (with - without)."""
    regression: Regression | None = None
    judge: JudgeSummary | None = None
