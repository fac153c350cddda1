"""Settings and results of the feature jobs (features build, features concept, steer-feature), as typed records.

Kept free of torch so that `greyglass --help` and the report can read them cheaply; the work
itself is in `build.py`, `concept.py` and `intervene.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..config import check_choice, check_positive, positional
from ..data.corpus import CorpusConfig
from ..errors import GreyglassError
from ..stats import Estimate
from ..steer.config import Comparison

SteerMode = Literal["clamp", "add"]


@dataclass(frozen=True)
class FeaturesConfig:
    """How much text to read and what to keep per latent."""

    tokens: int = 100_000
    """Tokens to run through the SAE (BOS excluded)."""
    top_k: int = 20
    """Max-activating contexts kept per latent."""
    n_samples: int = 20
    """Random active contexts kept per latent (shown sorted, as samples across its quantiles)."""
    window: int = 10
    """Tokens of context on each side of the activating token."""
    batch_windows: int = 8
    """Windows per forward pass."""
    lens_tokens: int = 10
    """Promoted and suppressed output tokens kept per latent by the logit lens."""

    def __post_init__(self) -> None:
        for name in ("tokens", "top_k", "n_samples", "batch_windows", "lens_tokens"):
            check_positive("FeaturesConfig", name, getattr(self, name))
        if self.window < 0:
            raise GreyglassError(f"FeaturesConfig.window must be >= 0, got {self.window}")


@dataclass(frozen=True)
class BuildConfig:
    sae: str = positional()
    """SAE folder (cfg.json + sae_weights.safetensors)."""
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    store: str | None = None
    """Read activations (with token ids) from this activation store instead of running the model on the corpus."""
    explainer: str | None = None
    """OpenAI-compatible server (e.g. http://localhost:8000/v1): explain the top latents and score each explanation."""
    explainer_model: str = "default"
    """Model name to send to the explainer server."""
    explain_top: int = 20
    """Latents to explain, most frequent first."""

    def __post_init__(self) -> None:
        check_positive("BuildConfig", "explain_top", self.explain_top)


@dataclass(frozen=True)
class Explanation:
    latent: int
    explanation: str
    detection: float | None
    """Balanced accuracy of the server picking, from the explanation alone, the snippets the latent fires on
    (0.5 is chance); None where there were no snippets to test."""


@dataclass(frozen=True)
class BuildResults:
    n_tokens: int
    d_sae: int
    site: str
    complete: bool
    """False when the pass was interrupted: the statistics cover the tokens read until then."""
    dead_latents: int
    median_density: float
    mean_l0: float
    seconds: float
    latent_tokens_per_second: int
    database: str
    """The feature database, relative to the run folder."""
    explanations: tuple[Explanation, ...] = ()


@dataclass(frozen=True)
class ConceptConfig:
    sae: str = positional()
    """SAE folder."""
    concept: str = "bridge"
    """Built-in concept name (bridge, disease, money, deception, code_bug) or a JSON file."""
    ntrex: int = 50
    """NTREX-128 news sentences added as controls per language, to each of the ranking and the held-out side
    (2 x N lines are read)."""
    top: int = 10
    """Latents to rank."""
    features: str | None = None
    """Features folder for dashboard links (default: <SAE>/features)."""

    def __post_init__(self) -> None:
        check_positive("ConceptConfig", "top", self.top)
        if self.ntrex < 0:
            raise GreyglassError(f"ConceptConfig.ntrex must be >= 0, got {self.ntrex}")


@dataclass(frozen=True)
class RankedLatent:
    latent: int
    languages: int
    """Languages whose concept sentences it fires on more than on every control (ranking sentences)."""
    fraction_of_languages: float
    carries: tuple[str, ...]
    mean_margin: float
    """Mean over languages of its mean on the concept minus its mean on the controls."""
    heldout_auroc: Estimate
    """AUROC concept vs controls on the held-out sentences, mean over languages; no interval from too few."""
    ranking_auroc: float
    """The same on the ranking sentences (in-sample, for contrast)."""
    concept_mean: dict[str, float]
    control_max: dict[str, float]
    dashboard: str | None = None
    """Its dashboard page, relative to the run folder, where a feature database was found."""


@dataclass(frozen=True)
class HeldoutCounts:
    """What the held-out AUROC rests on; a sentence and its translations count once."""

    concept_sentences: int
    control_sentences: int


@dataclass(frozen=True)
class ConceptResults:
    concept: str
    description: str
    languages: tuple[str, ...]
    n_sentences: dict[str, int]
    ntrex_controls: int
    heldout: HeldoutCounts
    ranked: tuple[RankedLatent, ...]
    dashboards: str | None = None
    """The dashboards' index, relative to the run folder; None without a feature database."""


DEFAULT_STEER_PROMPTS = ("Tell me about your weekend.", "What should I see on my next trip?")


@dataclass(frozen=True)
class SteerFeatureConfig:
    sae: str
    """SAE folder."""
    latent: int
    """The latent to steer with."""
    value: float
    """The latent's value (clamp) or coefficient of its decoder row (add)."""
    mode: SteerMode = "clamp"
    """clamp: the latent reads VALUE at every position; add: VALUE x its decoder row is added."""
    prompt: tuple[str, ...] = DEFAULT_STEER_PROMPTS
    """Prompt to continue with and without steering (repeatable)."""
    max_new_tokens: int = 40
    """Tokens to generate per prompt."""
    concept: str = "bridge"
    """Concept whose target words are measured (built-in name or JSON file)."""
    target_word: tuple[str, ...] = ()
    """Measure these words instead of the concept's (repeatable)."""
    values: tuple[float, ...] = ()
    """Values for the effect curve (repeatable); default 0, VALUE/4, VALUE/2, VALUE."""

    def __post_init__(self) -> None:
        check_choice("SteerFeatureConfig", "mode", self.mode, ("clamp", "add"))
        check_positive("SteerFeatureConfig", "max_new_tokens", self.max_new_tokens)
        if self.latent < 0:
            raise GreyglassError(f"SteerFeatureConfig.latent must be >= 0, got {self.latent}")
        if not self.prompt:
            raise GreyglassError("SteerFeatureConfig.prompt needs at least one prompt")

    def value_list(self) -> tuple[float, ...]:
        return self.values or (0.0, self.value / 4, self.value / 2, self.value)


@dataclass(frozen=True)
class TargetProbability:
    """The probability that the next token is a target word, at one steering value, over the neutral prompts."""

    value: float
    p_target: Estimate
    per_prompt: tuple[float, ...]


@dataclass(frozen=True)
class SteerFeatureResults:
    latent: int
    site: str
    mode: str
    value: float
    target_words: tuple[str, ...]
    generations: tuple[Comparison, ...]
    """Greedy replies without and with the latent at `value`."""
    n_prompts: int
    """Neutral prompts the target probability is averaged over."""
    baseline_p_target: Estimate
    """Without steering."""
    effect: tuple[TargetProbability, ...]
    plot: str
