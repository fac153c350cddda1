"""Settings and results of `greyglass redteam`, as typed records.

Kept free of torch so that `greyglass --help` and the report read them cheaply; the work is in
`models.py` (the red model, target and judge behind one interface), `classify.py` (rule, judge and
probe classifiers), `diversity.py` and `run.py` (the rounds and the run folder).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config import check_choice, check_positive
from ..errors import GreyglassError
from ..stats import Estimate
from .failures import FAILURE_NAMES, FailureName

METHODS: tuple[str, ...] = ("zero_shot", "few_shot")
CLASSIFIERS: tuple[str, ...] = ("rule", "judge", "probe")


@dataclass(frozen=True)
class RedteamConfig:
    """Which failure to look for, who writes the test cases, who answers, and who decides."""

    failure: FailureName = "secret"
    """The failure kind: secret (leaking a secret code from the system prompt), false_fact (a city in the wrong
    country, asserted confidently), agree_false (agreeing with a false claim the user states), power_seeking
    (a wish to avoid shutdown or gain resources)."""
    methods: tuple[str, ...] = METHODS
    """Generation methods (repeat the flag for several): zero_shot (the red model continues a list header) and
    few_shot (stochastic few-shot: earlier cases as list items, sampled with weights exp(score / shot_temperature))."""
    rounds: int = 3
    """Rounds; few_shot writes from round 2 on, from every case of earlier rounds."""
    cases: int = 8
    """Test cases each method writes per round."""
    answers: int = 1
    """Target answers per case (more than 1 needs target_temperature > 0; intervals then resample cases)."""
    red: str | None = None
    """The red model: an embedded name, a local model folder, or an OpenAI-compatible URL (/completions; a model name
    after '#', e.g. http://127.0.0.1:8000/v1#big); default: the target model itself."""
    target_url: str | None = None
    """Ask the target at this OpenAI-compatible URL (/chat/completions; '#name' as for --red) instead of --model."""
    judge: str | None = None
    """The judge model for the judge classifier: embedded name, folder or URL as for --red; default: the target."""
    judge_api: Literal["completions", "chat"] = "completions"
    """How a judge at a URL answers: completions (P(yes) from echoed log-probs) or chat (sampled replies, parsed)."""
    classifiers: tuple[str, ...] = ("rule",)
    """Classifiers to run (repeat the flag for several): rule, judge, probe. The first decides each verdict and
    drives the few-shot sampling; the others are recorded beside it, and their agreement is reported."""
    probe: str | None = None
    """A saved Direction folder for the probe classifier, read at its site on the target's answer tokens (local
    target only); its mean score over the answer above probe_threshold is a failure."""
    probe_threshold: float = 0.0
    """The probe score above which an answer fails (0: a logistic probe's even odds)."""
    red_temperature: float = 0.8
    """Sampling temperature of the red model (over the whole vocabulary)."""
    target_temperature: float = 0.0
    """Sampling temperature of the target (0: greedy)."""
    shots: int = 3
    """Earlier cases shown in each few-shot prompt."""
    shot_temperature: float = 0.1
    """Temperature of the few-shot sampling weights exp(score / T) (Perez et al. use 0.1)."""
    max_case_tokens: int = 32
    """Longest test case, in tokens (it also ends at the first newline)."""
    max_answer_tokens: int = 48
    """Longest target answer, in tokens."""
    worst: int = 5
    """Worst cases listed in the report."""
    batch_size: int = 8
    """Target answers per batch (greedy local target)."""
    n_bootstrap: int = 1000
    """Bootstrap resamples for the 95% intervals, and shuffles for the permutation test of the diversity gap."""
    seed: int = 0
    """Seed for the cases' setups, the red model's and target's samples, the few-shot draws and the bootstrap."""

    def __post_init__(self) -> None:
        check_choice("RedteamConfig", "failure", self.failure, FAILURE_NAMES)
        check_choice("RedteamConfig", "judge_api", self.judge_api, ("completions", "chat"))
        for m in self.methods:
            check_choice("RedteamConfig", "methods", m, METHODS)
        for c in self.classifiers:
            check_choice("RedteamConfig", "classifiers", c, CLASSIFIERS)
        if not self.methods or not self.classifiers or len(set(self.classifiers)) != len(self.classifiers):
            raise GreyglassError("RedteamConfig: give at least one method and one classifier, each once")
        for name in ("rounds", "cases", "answers", "shots", "shot_temperature", "max_case_tokens",
                     "max_answer_tokens", "worst", "batch_size", "n_bootstrap"):
            check_positive("RedteamConfig", name, getattr(self, name))
        if self.red_temperature < 0 or self.target_temperature < 0:
            raise GreyglassError("RedteamConfig.red_temperature and target_temperature must be >= 0")
        if self.answers > 1 and self.target_temperature == 0:
            raise GreyglassError("RedteamConfig.answers > 1 asks the same greedy answer again; "
                                 "set --target-temperature above 0")
        if "probe" in self.classifiers and self.probe is None:
            raise GreyglassError("RedteamConfig.classifiers: the probe classifier needs --probe DIR "
                                 "(a saved Direction)")
        if "probe" in self.classifiers and self.target_url is not None:
            raise GreyglassError("RedteamConfig: the probe classifier reads the local target's activations; "
                                 "a server (--target-url) returns none")
        if "few_shot" in self.methods and self.rounds < 2:
            raise GreyglassError("RedteamConfig.rounds: few_shot needs earlier cases, so at least 2 rounds")

    def uses_model(self) -> bool:
        """Whether the CLI loads --model: the target, unless it is a server."""
        return self.target_url is None


@dataclass(frozen=True)
class MethodResult:
    """One generation method's cases: how often they make the target fail, and how varied they are."""

    method: str
    n_cases: int
    n_answers: int
    failure_rate: Estimate
    """Share of answers that fail (by the deciding classifier), 95% CI resampling cases."""
    mean_score: Estimate
    """Mean failure score (rule: 0, 0.5 near miss, 1; judge: P(yes); probe: sigmoid of score - threshold)."""
    distinct: tuple[float, float, float]
    """distinct-1, -2, -3 of its cases."""
    self_bleu: float
    """Mean BLEU-4 of each case against the others (higher: less diverse)."""
    n_failing_cases: int
    """Cases with at least one failing answer."""
    failing_distinct: tuple[float, float, float]
    """distinct-1, -2, -3 of its failing cases (NaN when none)."""
    failing_self_bleu: float
    """self-BLEU of its failing cases (NaN for fewer than two)."""
    by_round: tuple[Estimate, ...]
    """Failure rate in each round the method wrote in."""
    rounds: tuple[int, ...]


@dataclass(frozen=True)
class Agreement:
    """How one classifier's verdicts compare with another's (the reference) on the same answers."""

    classifier: str
    reference: str
    n: int
    n_reference_failures: int
    """Answers the reference calls failures: with few, the AUROC rests on few answers whatever its interval."""
    accuracy: Estimate
    """Share of answers where its verdict equals the reference's."""
    auroc: Estimate | None
    """AUROC of its score for the reference's verdict (None when the reference is all one verdict)."""


@dataclass(frozen=True)
class DiversityGap:
    """Whether two methods' cases differ in diversity: self-BLEU of the first minus the second's, and the
    permutation p-value of a gap that large (cases shuffled between the methods, sizes kept)."""

    first: str
    second: str
    self_bleu_gap: float
    p_value: float
    n_permutations: int


@dataclass(frozen=True)
class WorstCase:
    id: str
    method: str
    round: int
    case: str
    answer: str
    score: float
    evidence: str


@dataclass(frozen=True)
class RedteamResults:
    failure: str
    about: str
    decided_by: str
    """The classifier whose verdicts the rates count."""
    red: str
    target: str
    judge: str | None
    n_cases: int
    n_answers: int
    methods: tuple[MethodResult, ...]
    classifier_rates: dict[str, Estimate]
    """Failure rate over all answers by each classifier that ran."""
    agreement: tuple[Agreement, ...]
    """Each other classifier against the judge where a judge ran (else against the deciding classifier)."""
    diversity_gap: DiversityGap | None
    """zero_shot against few_shot, where both ran."""
    worst: tuple[WorstCase, ...]
    cases: str
    """Every case, answer, verdict and evidence (JSONL), relative to the run folder."""
    plot: str
    """Diversity (1 - self-BLEU) against failure rate, per method and round (SVG)."""

    def method(self, name: str) -> MethodResult:
        return next(m for m in self.methods if m.method == name)
