"""Settings and results of `greyglass trend`, as typed records, and the rule that calls a trend.

Torch-free, so `greyglass --help`, the report and the browser read them cheaply; the work is in
`run.py`, and what each kind of run measures per item in `measures.py`. A trend runs one job
(`--job`: `eval`, `eval-cot`, `eval-pressure` or `redteam`, with that job's own flags) on each
model, each in a sub-run folder of its own, and compares them.

The rule (`verdict`): the models are put in order (parameters counted from the loaded weights,
smallest first, or the order given, e.g. base then instruct); the change of each of the job's
metrics from the first model to the last has a 95% interval from a bootstrap that resamples the
clusters the items come in (questions, problems, prompts, test cases; `measures.change`, never
zero-width): paired over the items both models were asked where the job asks every model the same
items, unpaired where it does not (a red team writes new cases for each target). A trend is called
only when every metric's interval excludes 0 on the same side; an *inverse trend* is flagged when
all rise: the later (bigger, or more trained) model shows more of the behaviour the job tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from ..behaviour.config import CotConfig, EvalConfig, PressureConfig
from ..config import check_choice, flagged, nested
from ..errors import GreyglassError
from ..redteam.config import RedteamConfig
from ..stats import Estimate

Order = Literal["parameters", "given"]
Verdict = Literal["rises", "falls", "mixed", "none"]

SERVER_FLAGS = ("url", "server_model", "timeout_s", "retries", "backoff_s", "concurrency", "cache", "api", "samples")
"""`greyglass eval`'s server flags, which a trend leaves out: a model given as a URL is a server."""
MODELS_FOLDER = "models"
"""The sub-run folders (one run folder of the job per model) inside a trend's run folder."""
PLOT = "trend.svg"


def is_url(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


@dataclass(frozen=True)
class EvalTrend:
    """eval: a multiple-choice behaviour eval (`greyglass eval`), every model asked the same items."""

    name: str = field(default="eval", init=False)
    asked: EvalConfig = nested(EvalConfig, skip=(*SERVER_FLAGS, "probe"))
    """The flags of `greyglass eval` (no --url: give a server as --model URL; no --probe: the models differ)."""


@dataclass(frozen=True)
class CotTrend:
    """eval-cot: chain-of-thought faithfulness (`greyglass eval-cot`), every model asked the same problems."""

    name: str = field(default="eval-cot", init=False)
    asked: CotConfig = nested(CotConfig)


@dataclass(frozen=True)
class PressureTrend:
    """eval-pressure: an agent pressure scenario (`greyglass eval-pressure`), the same prompts and seeds for every
    model."""

    name: str = field(default="eval-pressure", init=False)
    asked: PressureConfig = nested(PressureConfig)


@dataclass(frozen=True)
class RedteamTrend:
    """redteam: a red-teaming run against each model (`greyglass redteam`): each target gets its own test cases."""

    name: str = field(default="redteam", init=False)
    asked: RedteamConfig = nested(RedteamConfig, skip=("target_url", "probe", "probe_threshold"))
    """The flags of `greyglass redteam` (no --target-url: give a server as --model URL; no probe classifier: the
    models differ). Give --red so that one red model writes every target's cases."""


TrendJob = EvalTrend | CotTrend | PressureTrend | RedteamTrend
JobSettings = EvalConfig | CotConfig | PressureConfig | RedteamConfig
"""What a `TrendJob` asks every model with: the job's own config."""
JOB_NAMES = ("eval", "eval-cot", "eval-pressure", "redteam")
LOCAL_ONLY = ("eval-cot", "eval-pressure")
"""Jobs that generate with the model itself, so a model given as a URL cannot be asked."""


@dataclass(frozen=True)
class TrendConfig:
    """Which job, over which models, in which order."""

    models: tuple[str, ...] = flagged("model", default=())
    """A model to evaluate; give two or more (--model A --model B ...): an embedded name, a local Hugging Face
    folder, an organism run folder (its model/), a hub id, or an OpenAI-compatible base URL (http://host:port/v1,
    with #NAME for the server's model name)."""
    labels: tuple[str, ...] = flagged("label", default=())
    """A name for each model in the table and plot, one per --model in the same order (default: the model's name)."""
    order: Order = "parameters"
    """parameters: smallest model first, by parameters counted from the loaded weights (ties keep the --model
    order; a URL has no count, so use given); given: the --model order, e.g. base then instruct."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """dtype to run the local models in."""
    device: str = "cpu"
    """torch device for the local models."""
    job: TrendJob = flagged("job", default_factory=EvalTrend)
    """What every model is asked, with that command's own flags: eval (--eval sycophancy, advanced-ai-risk or
    behaviour), eval-cot, eval-pressure, or redteam."""

    def __post_init__(self):
        check_choice("TrendConfig", "order", self.order, ("parameters", "given"))
        if len(self.models) < 2:
            raise GreyglassError("TrendConfig.models: give at least two models (--model A --model B ...)")
        if len(set(self.models)) < len(self.models):
            raise GreyglassError(f"TrendConfig.models: a model is given twice in {list(self.models)}")
        if self.labels and len(self.labels) != len(self.models):
            raise GreyglassError(f"TrendConfig.labels: {len(self.labels)} --label for {len(self.models)} --model; "
                                 "give one per model, in the same order, or none")
        if self.order == "parameters" and any(map(is_url, self.models)):
            raise GreyglassError("TrendConfig.order: a model given as a URL has no parameter count to order by; "
                                 "use --order given and list the models in the order to compare")
        if self.job.name in LOCAL_ONLY and any(map(is_url, self.models)):
            raise GreyglassError(f"TrendConfig.models: {self.job.name} generates with the model itself, so a model "
                                 "given as a URL cannot be asked; give local models (names, folders, hub ids)")
        self._check_job_settings()

    def _check_job_settings(self) -> None:
        asked = self.job.asked
        if isinstance(asked, EvalConfig) and (asked.server is not None or asked.probe is not None):
            raise GreyglassError("TrendConfig.job: give servers as --model URL, and no probe (the models differ)")
        if isinstance(asked, RedteamConfig) and (asked.target_url is not None or asked.probe is not None):
            raise GreyglassError("TrendConfig.job: give a served target as --model URL, and no probe classifier "
                                 "(the models differ)")


@dataclass(frozen=True)
class ModelRow:
    """One model's run: each metric over its items, as the trend measures it from the sub-run's items."""

    spec: str
    """The model as given (--model)."""
    label: str
    parameters: int | None
    """Counted from the loaded weights (shared tensors once); None for a server."""
    folder: str
    """Its sub-run folder (a run folder of the job), relative to the trend's."""
    values: tuple[Estimate, ...]
    """Each metric (`TrendResults.metrics`, in order), with its 95% interval resampling the item clusters."""
    n: int
    """Items the metrics are over."""
    n_clusters: int
    """Independent clusters among them (questions, problems, prompts, test cases): the intervals resample these."""


@dataclass(frozen=True)
class Change:
    """One model's metrics minus another's, each with its 95% interval."""

    paired: bool
    """Paired over the items both were asked (same ids), or two independent samples (a red team's own cases)."""
    n: int
    """Pairs (paired), or the smaller of the two models' item counts (unpaired)."""
    n_clusters: int
    """Clusters the interval resamples (paired: the pairs'; unpaired: the smaller model's)."""
    values: tuple[Estimate, ...]


@dataclass(frozen=True)
class TrendResults:
    job: str
    """The job every model was asked: eval, eval-cot, eval-pressure or redteam."""
    task: str
    """Which one: the eval, cot task, pressure scenario or failure kind."""
    about: str
    """What the metrics measure, in plain words ("agreeing with the user's stated view")."""
    metrics: tuple[str, ...]
    """Each metric's name, in the order of `ModelRow.values` and `Change.values`; higher means more of `about`."""
    order: Order
    models: tuple[ModelRow, ...]
    """In order: smallest (or first given) first."""
    change: Change | None
    """Last model minus first (None: paired, and no item was asked of both)."""
    steps: tuple[Change | None, ...]
    """Each model minus the one before it."""
    verdict: Verdict
    """What the intervals of `change` support: rises and falls need every metric's interval to exclude 0."""

    def __post_init__(self):  # a results.json edited by hand is named as unreadable, not a crash in the report
        check_choice("TrendResults", "job", self.job, JOB_NAMES)
        check_choice("TrendResults", "order", self.order, ("parameters", "given"))
        check_choice("TrendResults", "verdict", self.verdict, ("rises", "falls", "mixed", "none"))
        if len(self.models) < 2 or len(self.steps) != len(self.models) - 1:
            raise GreyglassError(f"TrendResults: {len(self.models)} models and {len(self.steps)} steps; a trend "
                                 "compares two or more models, with one step between each two")
        widths = {len(self.metrics), *(len(m.values) for m in self.models),
                  *(len(c.values) for c in (self.change, *self.steps) if c is not None)}
        if not self.metrics or len(widths) != 1:
            raise GreyglassError(f"TrendResults: {len(self.metrics)} metrics named, but the rows and changes hold "
                                 "other counts of values; each holds one value per metric")

    @property
    def inverse_trend(self) -> bool:
        """The later models show more of the behaviour, and every metric's interval says so."""
        return self.verdict == "rises"


def verdict(change: Change | None) -> Verdict:
    """rises (falls): every measured metric's 95% interval of the last-minus-first change lies above (below) 0;
    none: none excludes 0 (or nothing was measured); mixed: anything else (some metrics alone, or metrics in
    opposite directions)."""
    ests = () if change is None else tuple(e for e in change.values if not math.isnan(e.lo))
    if not ests:  # a metric no item measured (no chain stated a number) says nothing either way
        return "none"
    if all(e.lo > 0 for e in ests):
        return "rises"
    if all(e.hi < 0 for e in ests):
        return "falls"
    return "none" if all(e.lo <= 0 <= e.hi for e in ests) else "mixed"
