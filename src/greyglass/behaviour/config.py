"""Settings of the eval jobs (`eval`, `eval-cot`, `eval-pressure`) and of the HTTP backend, as typed records.

Kept free of torch so that `greyglass --help`, the report and the browser can read them
cheaply; the work is in `run.py`, `cot.py` and `pressure.py`. Each field's docstring is its
flag's help.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..config import check_choice, check_positive
from ..errors import GreyglassError
from .formats import PromptFormat
from .tasks import EVALS

Task = Literal["addition", "gsm8k", "mgsm"]
MGSM_LANGS = ("en", "de", "es", "fr", "ja", "zh", "ru", "th", "sw", "bn", "te")
Scenario = Literal["insider-trading", "customer-funds"]


@dataclass(frozen=True)
class HttpConfig:
    """Where the server is and how patiently to talk to it."""

    url: str
    """Score with the OpenAI-compatible server at this base URL (e.g. http://127.0.0.1:8000/v1) instead of a local model (API key, if it needs one: OPENAI_API_KEY)."""
    server_model: str = "default"
    """The `model` field sent with each request."""
    timeout_s: float = 60.0
    """Seconds to wait for one response."""
    retries: int = 4
    """Further tries after a failure that may pass (connection error, timeout, 408, 429, 5xx)."""
    backoff_s: float = 0.5
    """First wait before a retry; doubles each time (with jitter)."""
    concurrency: int = 4
    """Requests in flight at once."""
    cache: str | None = None
    """JSONL file of responses, reused across runs (default: responses.jsonl in the run folder)."""
    api: Literal["completions", "chat"] = "completions"
    """completions: exact answer log-probs from echoed prompts; chat: for chat-only servers, answers sampled and parsed."""
    samples: int = 8
    """With api=chat: replies sampled per question; an answer scores the log of its (smoothed) share of them."""

    def __post_init__(self):
        check_positive("HttpConfig", "timeout_s", self.timeout_s)
        check_positive("HttpConfig", "concurrency", self.concurrency)
        check_positive("HttpConfig", "samples", self.samples)
        check_choice("HttpConfig", "api", self.api, ("completions", "chat"))
        if self.retries < 0 or self.backoff_s < 0:
            raise GreyglassError("HttpConfig.retries and backoff_s must be >= 0")


@dataclass(frozen=True)
class EvalConfig:
    """Which eval, on which items, asked how and of whom: the local model (optionally probe-monitored) or a server."""

    eval: str = "sycophancy"
    """sycophancy, advanced-ai-risk, or behaviour (with --datasets)."""
    datasets: tuple[str, ...] = ()
    """Bundled dataset names or .jsonl/.json files (default: the eval's own datasets)."""
    limit: int | None = None
    """Ask at most this many items, sampled stratified by dataset and matching answer."""
    seed: int = 0
    """Seed for sampling and bootstrap intervals."""
    batch_size: int | None = None
    """Prompts per forward pass (local) or requests in flight (HTTP); default: the backend's own (local: 8 on the
    CPU, 64 on a GPU; HTTP: 8)."""
    both_orders: bool = True
    """Also ask each two-answer item with the answers swapped between (A) and (B), and headline the average of both
    orders (a model's lean towards a letter is not a behaviour); --no-both-orders asks the file's order only."""
    prompt: PromptFormat = field(default_factory=PromptFormat)
    """How a question becomes the text the model continues (its answer prefix defaults to the eval's own)."""
    server: HttpConfig | None = None
    """Score through an OpenAI-compatible server (--url and its settings) instead of a local model."""
    probe: str | None = None
    """A saved Direction folder (probe or steering vector): record its score at the answer position during the same
    forward pass and report its AUROC for the behaviour (local model only)."""

    def __post_init__(self):
        check_choice("EvalConfig", "eval", self.eval, tuple(EVALS))
        check_positive("EvalConfig", "limit", self.limit)
        check_positive("EvalConfig", "batch_size", self.batch_size)
        if self.eval == "behaviour" and not self.datasets:
            raise GreyglassError("EvalConfig.datasets: the behaviour eval needs at least one --datasets")
        if self.probe is not None and self.server is not None:
            raise GreyglassError("EvalConfig.probe needs the local model (a server does not return activations); "
                                 "drop --url or --probe")

    def uses_model(self) -> bool:
        """Whether the eval asks a local model (not a server)."""
        return self.server is None


@dataclass(frozen=True)
class CotConfig:
    """Which problems and how long the model may reason."""

    task: Task = "addition"
    """addition (generated), gsm8k, or mgsm."""
    language: str = "en"
    """MGSM language (en, de, es, fr, ja, zh, ru, th, sw, bn, te)."""
    limit: int = 20
    """Problems to ask (additions: spread over the difficulty grid)."""
    max_cot_tokens: int = 128
    """Longest chain of thought, in tokens."""
    fractions: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    """Early-answering cut points (fractions of the chain kept)."""
    seed: int = 0
    """Seed for problems, the mistaken step and bootstrap intervals."""

    def __post_init__(self):
        check_choice("CotConfig", "task", self.task, ("addition", "gsm8k", "mgsm"))
        check_choice("CotConfig", "language", self.language, MGSM_LANGS)
        check_positive("CotConfig", "limit", self.limit)
        check_positive("CotConfig", "max_cot_tokens", self.max_cot_tokens)
        if sorted(self.fractions) != list(self.fractions) or self.fractions[0] != 0 or self.fractions[-1] != 1:
            raise GreyglassError("CotConfig.fractions must rise from 0 to 1, e.g. 0 0.25 0.5 0.75 1")


@dataclass(frozen=True)
class PressureConfig:
    """Which scenario and how many samples per condition."""

    scenario: Scenario = "insider-trading"
    """insider-trading or customer-funds."""
    samples: int = 8
    """Samples per condition (insider-trading) or per grid cell (customer-funds), each with and without the ethics instruction."""
    temperature: float = 0.8
    """Sampling temperature."""
    max_tokens: int = 160
    """Longest reply per turn, in tokens."""
    seed: int = 0
    """Base seed: sample i uses seed + i in both ethics conditions."""
    judge_url: str | None = None
    """Also classify hiding and doubling down with a judge model at this OpenAI-compatible server (chat API)."""

    def __post_init__(self):
        check_choice("PressureConfig", "scenario", self.scenario, ("insider-trading", "customer-funds"))
        check_positive("PressureConfig", "samples", self.samples)
        check_positive("PressureConfig", "temperature", self.temperature)
        check_positive("PressureConfig", "max_tokens", self.max_tokens)
