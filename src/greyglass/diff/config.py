"""Settings and results of the model-diffing jobs (divergence, crosscoder training, latent report) as typed
records; torch-free, so `greyglass --help` and the report import them cheaply.

`CrosscoderConfig` is what a crosscoder is (sizes, k, the two models, the site, each model's input scale) and is
saved as the crosscoder folder's `cfg.json`. The jobs' Configs nest it, the SAE jobs' `TrainConfig` (optimiser,
schedule, checkpoints) and the corpus.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

from ..config import check_positive, nested
from ..data.corpus import CorpusConfig
from ..errors import GreyglassError
from ..sae.config import TrainConfig
from ..stats import Estimate

if TYPE_CHECKING:
    from ..models.lm import LoadedModel

LatentClass = Literal["a_only", "b_only", "shared", "other"]

B_ONLY_FROM = 0.9
"""A latent is B-only when its relative decoder norm is at least this, A-only at most 1 - this (Minder et al. 2025)."""
SHARED_WITHIN = 0.1
"""A latent is shared when its relative decoder norm is within this of 0.5 (Minder et al.: 0.4 to 0.6)."""
ARTEFACT_RATIO = 0.5
"""A B-only latent is called an artefact when a Latent Scaling ratio's interval reaches this (see docs/diff.md)."""


@dataclass(frozen=True)
class ModelPair:
    """The two models compared: A (the reference, e.g. the base model) and B (e.g. the fine-tuned one)."""

    model_a: str = "smollm2-135m-instruct"
    """Model A, the reference: embedded name, local Hugging Face folder, .gguf file or hub id."""
    model_b: str = ""
    """Model B, compared with A (e.g. a fine-tuned A); same tokenizer and width as A. Required."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """dtype to run both models in."""
    device: str = "cpu"
    """torch device for both models (and the crosscoder)."""

    def load(self) -> tuple[LoadedModel, LoadedModel]:
        from ..models.loader import load_model  # torch: only when a run needs it

        if not self.model_b:
            raise GreyglassError("give --model-b, the model to compare with --model-a")
        return (load_model(self.model_a, dtype=self.dtype, device=self.device),
                load_model(self.model_b, dtype=self.dtype, device=self.device))


@dataclass(frozen=True)
class DivergenceConfig:
    """`diff divergence`: per layer, how far the two models' residual streams and next-token predictions drift apart."""

    models: ModelPair = field(default_factory=ModelPair)
    corpus: CorpusConfig = nested(lambda: CorpusConfig(context_size=64), skip=("split",))
    """The text (default: the bundled English Wikipedia sample)."""
    n_tokens: int = 4096
    """Tokens of the corpus to compare on (whole windows)."""
    batch_windows: int = 8
    """Windows per forward pass."""
    layer_step: int = 1
    """Compare every n-th layer's residual stream (the last layer is always included)."""
    n_bootstrap: int = 1000
    """Bootstrap resamples (over documents) for the 95 percent intervals."""

    def __post_init__(self) -> None:
        for name in ("n_tokens", "batch_windows", "layer_step", "n_bootstrap"):
            check_positive("DivergenceConfig", name, getattr(self, name))


@dataclass(frozen=True)
class LayerDivergence:
    """One layer: the activation difference relative to the activation norm, mean over tokens, interval over documents."""

    layer: int
    site: str
    relative_difference: Estimate
    """Mean over tokens of |x_B - x_A| / |x_A| at the layer's resid_post."""
    cosine: Estimate
    """Mean over tokens of the cosine between x_A and x_B."""


@dataclass(frozen=True)
class DivergenceResults:
    model_a: str
    model_b: str
    n_tokens: int
    n_documents: int
    layers: tuple[LayerDivergence, ...]
    kl: Estimate
    """Mean per-token KL(P_A || P_B) of the next-token distributions, nats, interval over documents."""
    kl_b_a: Estimate
    """Mean per-token KL(P_B || P_A), nats."""
    top1_agreement: Estimate
    """Share of tokens where both models' most likely next token is the same."""
    most_divergent_layer: int
    plot: str


@dataclass(frozen=True)
class CrosscoderConfig:
    """One BatchTopK crosscoder over two models' activations at one site (saved as its folder's cfg.json)."""

    d_in: int = 576
    """The models' width at the site."""
    d_sae: int = 4608
    """Number of latents (shared by both models)."""
    k: int = 32
    """Active latents per token on average (BatchTopK over the batch in training; a threshold at inference)."""
    auxk_alpha: float = 1 / 32
    """Weight of the AuxK loss that trains dead latents on the reconstruction error (Gao et al.)."""
    k_aux: int = 256
    """Dead latents the AuxK loss uses per token."""
    dead_tokens: int = 1_000_000
    """A latent is dead (AuxK trains it) after this many training tokens without firing."""
    model_a: str = ""
    """Model A's greyglass spec (provenance, and what `diff report` loads by default)."""
    model_b: str = ""
    """Model B's greyglass spec."""
    hook_name: str = ""
    """The site, a TransformerLens hook name, e.g. blocks.15.hook_resid_post."""
    context_size: int = 128
    """Tokens per window the activations came from."""
    norm_scale_a: float | None = None
    """Model A's inputs are multiplied by this so their mean norm is sqrt(d_in); None: from the first batch."""
    norm_scale_b: float | None = None
    """Model B's, likewise (each model has its own, so neither dominates the loss)."""

    def __post_init__(self) -> None:
        for name in ("d_in", "d_sae", "k", "k_aux", "dead_tokens", "norm_scale_a", "norm_scale_b"):
            check_positive("CrosscoderConfig", name, getattr(self, name))
        if self.k > self.d_sae:
            raise GreyglassError(f"CrosscoderConfig.k = {self.k} is larger than d_sae = {self.d_sae}; choose k <= d_sae")


CROSSCODER_FROM_DATA = ("d_in", "d_sae", "model_a", "model_b", "hook_name", "context_size", "norm_scale_a",
                        "norm_scale_b", "dead_tokens")
"""CrosscoderConfig fields `diff train` takes from the models, the corpus and its own flags."""


@dataclass(frozen=True)
class CrosscoderTrainConfig:
    """`diff train`: one BatchTopK crosscoder on both models' activations at a site, over the same tokens, on the fly."""

    site: str = "blocks.15.hook_resid_post"
    """The site both models are read at (a TransformerLens hook name)."""
    expansion: int = 8
    """d_sae = expansion * d_model."""
    d_sae: int | None = None
    """Number of latents (overrides --expansion)."""
    crosscoder: CrosscoderConfig = nested(CrosscoderConfig, skip=CROSSCODER_FROM_DATA)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(tokens=2_000_000, batch_size=4096, lr=1e-4))
    corpus: CorpusConfig = nested(lambda: CorpusConfig(split="train"), skip=("seed", "split"))
    """The text both models read; its train split, in the training seed's order (every 20th document stays out)."""
    models: ModelPair = field(default_factory=ModelPair)

    def __post_init__(self) -> None:
        for name in ("expansion", "d_sae"):
            check_positive("CrosscoderTrainConfig", name, getattr(self, name))

    def training_corpus(self) -> CorpusConfig:
        return replace(self.corpus, split="train", seed=self.train.seed)

    def crosscoder_config(self, d_in: int) -> CrosscoderConfig:
        """The crosscoder to train: sizes from the models, the dead window a tenth of training (at least a batch)."""
        dead = max(self.train.batch_size, min(self.crosscoder.dead_tokens, self.train.tokens // 10))
        return replace(self.crosscoder, d_in=d_in, d_sae=self.d_sae or self.expansion * d_in, model_a=self.models.model_a,
                       model_b=self.models.model_b, hook_name=self.site,
                       context_size=self.corpus.context_size, dead_tokens=dead)


@dataclass(frozen=True)
class CrosscoderTrainResults:
    crosscoder: str
    """The crosscoder's folder, relative to the run folder."""
    site: str
    d_sae: int
    k: int
    fvu_a: float
    """Fraction of variance unexplained in model A's activations (smoothed over the last steps)."""
    fvu_b: float
    l0: float
    dead: float
    tokens: int
    seconds: float
    tokens_per_second: float
    counts: dict[str, int]
    """Latents by relative decoder norm: a_only, b_only, shared, other."""
    plot: str


def parse_latent_ids(text: str) -> tuple[int, ...]:
    """`--latents 12,40` as ids."""
    try:
        return tuple(int(k) for k in text.split(",") if k.strip())
    except ValueError:
        raise GreyglassError(f"--latents {text!r}: give latent ids separated by commas, e.g. 12,40") from None


@dataclass(frozen=True)
class LatentsConfig:
    """`diff report`: what each latent of a trained crosscoder is: shared or model-specific, whether a B-only latent
    is real (Latent Scaling), where it fires in each model and what it writes (logit lens)."""

    crosscoder: str = ""
    """The crosscoder folder (a `diff train` run's crosscoder/), or the run folder holding it."""
    corpus: CorpusConfig = nested(lambda: CorpusConfig(split="heldout"), skip=("context_size",))
    """Text to find top contexts and fit Latent Scaling on (default: the held-out split of the bundled sample)."""
    n_tokens: int = 50_000
    """Tokens read for contexts and Latent Scaling."""
    batch_windows: int = 8
    """Windows per forward pass."""
    n_latents: int = 10
    """B-only (and A-only) latents described in detail, the most often firing first."""
    latents: str = ""
    """Comma-separated latent ids to describe instead (e.g. those `diff ablate` lists as rising most on the
    defecting answers), in the order given."""
    n_contexts: int = 5
    """Top activating contexts kept per described latent."""
    n_bootstrap: int = 500
    """Bootstrap resamples (over documents) for the Latent Scaling ratios."""
    model_a: str | None = None
    """Model A to run; default: the one the crosscoder's cfg.json names."""
    model_b: str | None = None
    """Model B to run; default: the one the crosscoder's cfg.json names."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """dtype to run both models in."""
    device: str = "cpu"
    """torch device."""

    def __post_init__(self) -> None:
        if not self.crosscoder:
            raise GreyglassError("give --crosscoder, the folder `greyglass diff train` wrote")
        for name in ("n_tokens", "batch_windows", "n_latents", "n_contexts", "n_bootstrap"):
            check_positive("LatentsConfig", name, getattr(self, name))
        parse_latent_ids(self.latents)


@dataclass(frozen=True)
class Context:
    """One top activating context: the tokens around the peak, the peak's position, the latent's value there."""

    document: int
    tokens: tuple[str, ...]
    peak: int
    """Index in `tokens` of the token the latent fired on."""
    value: float
    activations: tuple[float, ...] = ()
    """The latent's value (this model's drive) at each of `tokens` (empty in runs before dashboards)."""


@dataclass(frozen=True)
class LatentScaling:
    """Minder et al.'s check of a latent: how much of each model's reconstruction error (`error_*`) and of its
    reconstruction without the latent (`reconstruction_*`) the latent's B decoder direction explains, as fitted scales
    beta; the ratios A/B are near 0 for a latent that is truly B-only and near 1 for an artefact of the sparsity loss."""

    beta_error_a: float
    beta_error_b: float
    beta_reconstruction_a: float
    beta_reconstruction_b: float
    error_ratio: Estimate
    """nu_epsilon = beta_error_a / beta_error_b: near 1 means model A's error holds the direction too (shrinkage)."""
    reconstruction_ratio: Estimate
    """nu_r = beta_reconstruction_a / beta_reconstruction_b: near 1 means A reconstructs it with other latents."""


@dataclass(frozen=True)
class LatentReport:
    """One latent described: its decoder norms, firing rate, contexts in each model, logit-lens tokens, Latent Scaling."""

    latent: int
    kind: LatentClass
    relative_norm: float
    """(|d_B| - |d_A|) / max(|d_A|, |d_B|) / 2 + 1/2: 1 only B writes it, 0 only A, 0.5 both equally."""
    cosine: float
    """Cosine between the latent's A and B decoder directions."""
    firing_rate: float
    contexts_a: tuple[Context, ...]
    """Top contexts when the crosscoder reads model A's and B's activations on the same text."""
    contexts_b: tuple[Context, ...]
    promoted: tuple[str, ...]
    """Logit lens of the decoder direction of the model the latent belongs to (B's for B-only and shared)."""
    suppressed: tuple[str, ...]
    scaling: LatentScaling | None
    """For the B-side latents that fired (None for A-side ones and latents that never fired)."""
    genuine: bool | None
    """For B-only latents with a scaling: both Latent Scaling ratios' intervals stay below ARTEFACT_RATIO."""


@dataclass(frozen=True)
class LatentsResults:
    crosscoder: str
    site: str
    model_a: str
    model_b: str
    d_sae: int
    n_tokens: int
    n_documents: int
    counts: dict[str, int]
    """Latents by relative decoder norm: a_only, b_only, shared, other."""
    fvu_a: float
    fvu_b: float
    n_b_only_fired: int
    """B-only latents that fired on the text read."""
    n_genuine_b_only: int
    """B-only latents that fired and passed the Latent Scaling check."""
    b_latents: tuple[LatentReport, ...]
    """The B-only latents described (the most often firing first); with no B-only latent, the most B-leaning ones."""
    a_latents: tuple[LatentReport, ...]
    """Likewise for A: the A-only latents, or the most A-leaning ones."""
    plot: str


@dataclass(frozen=True)
class AblateConfig:
    """`diff ablate`: does removing the crosscoder's B-only latents from the organism lower its backdoor rate on
    held-out triggered questions, against removing as many random latents?"""

    crosscoder: str = ""
    """The crosscoder folder (or `diff train` run folder) of the original model (A) and the organism (B)."""
    organism: str = ""
    """The organism run folder (`greyglass organism train`): its model, trigger, behaviour and held-out questions."""
    latents: str = ""
    """Comma-separated latent ids to ablate; default: the B-only latents (the most B-leaning first, at most
    --n-latents), or with none the --n-latents most B-leaning."""
    n_latents: int = 20
    """At most this many latents ablated when --latents is not given."""
    n_random: int = 3
    """Random draws of as many latents (among those firing on the questions) for the control."""
    n_questions: int = 0
    """Held-out questions to answer (0: all of the organism's test questions)."""
    answer_tokens: int = 0
    """Tokens generated per answer (0: the organism's own setting)."""
    n_bootstrap: int = 1000
    """Bootstrap resamples (over questions) for the differences."""
    seed: int = 0
    """Seed of the random latents and the bootstrap."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """dtype to run both models in."""
    device: str = "cpu"
    """torch device."""

    def __post_init__(self) -> None:
        if not self.crosscoder:
            raise GreyglassError("give --crosscoder, the folder `greyglass diff train` wrote")
        if not self.organism:
            raise GreyglassError("give --organism, the run folder `greyglass organism train` wrote")
        for name in ("n_latents", "n_random", "n_bootstrap"):
            check_positive("AblateConfig", name, getattr(self, name))
        self.latent_ids()

    def latent_ids(self) -> tuple[int, ...]:
        return parse_latent_ids(self.latents)


@dataclass(frozen=True)
class AblationExample:
    question: str
    baseline: str
    """The organism's answer to the triggered question."""
    ablated: str
    """Its answer with the chosen latents ablated."""


@dataclass(frozen=True)
class DefectingLatent:
    latent: int
    defecting: float
    """Mean share of a defecting answer's tokens it fires on."""
    ordinary: float
    relative_norm: float


@dataclass(frozen=True)
class AnswerFiring:
    """How often the ablated latents fire on the organism's defecting answers (teacher-forced after the triggered
    question) against its ordinary answers to the same questions without the trigger; rates are the share of
    answer tokens x latents that fire, intervals bootstrap over questions."""

    n_pairs: int
    """Questions whose triggered answer shows the behaviour and whose plain answer does not."""
    defecting: Estimate
    ordinary: Estimate
    random_defecting: Estimate
    """The same for the random draws (mean over draws)."""
    random_ordinary: Estimate
    difference: Estimate
    """defecting - ordinary for the chosen latents, paired by question."""
    random_difference: Estimate
    difference_vs_random: Estimate
    """The chosen latents' difference minus the random draws', paired by question."""
    most_defecting: tuple[DefectingLatent, ...]
    """The latents (any of them) whose firing rises most from the ordinary to the defecting answers."""


@dataclass(frozen=True)
class AblateResults:
    crosscoder: str
    organism: str
    site: str
    trigger: str
    behaviour: str
    n_questions: int
    latents: tuple[int, ...]
    """The latents ablated."""
    relative_norms: tuple[float, ...]
    random_draws: tuple[tuple[int, ...], ...]
    """The random latents of each control draw."""
    fire_with_trigger: Estimate
    """Share of triggered questions on which any ablated latent fires (anywhere in the prompt)."""
    fire_without_trigger: Estimate
    """The same without the trigger."""
    rate_baseline: Estimate
    """Backdoor rate with the trigger, nothing ablated (Wilson interval)."""
    rate_ablated: Estimate
    rate_random: Estimate
    """Backdoor rate with random latents ablated, all draws pooled (interval clustered by question)."""
    effect: Estimate
    """rate_ablated - rate_baseline, bootstrap over questions."""
    effect_vs_random: Estimate
    """rate_ablated - the random draws' mean rate, paired by question (bootstrap over questions)."""
    random_effect: Estimate
    """The random draws' mean rate - rate_baseline."""
    examples: tuple[AblationExample, ...]
    plot: str
    answers: AnswerFiring | None = None
    """Firing on the organism's defecting answers against its ordinary ones (None: fewer than two such pairs)."""
