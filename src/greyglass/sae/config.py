"""Settings of sparse autoencoders and of the SAE jobs, as typed records (no torch: `greyglass --help`
and the report import them).

`SAEConfig` is what an SAE is: the sizes, the architecture with its own sparsity settings
(`arch`: one of `ReLUConfig`, `TopKConfig`, `BatchTopKConfig`, `MatryoshkaConfig`, `JumpReLUConfig`), the
frequency-aware cost (`freq_cost`), the input normalisation and where the SAE reads from (model,
site, context size), so a saved SAE carries everything an evaluation or a later analysis needs.
`TrainConfig` holds the optimiser and the schedule, shared by every SAE trained from one pass
over the data. `MetricsConfig`, `AbsorptionConfig` and `MetaConfig` are the settings of an
evaluation, the first-letter absorption benchmark and a meta-SAE.

Each job's Config (`TrainRunConfig`, `MetricsRunConfig`, `AbsorptionRunConfig`, `DetectorRunConfig`,
`MetaRunConfig`, `FreqExperimentConfig`) nests those: its fields are the command's flags.
The nested configs keep today's flags (`--architecture`, `--k`, `--l1-coefficient`,
`--jumprelu-bandwidth`, `--freq-cost`, ...: `greyglass.config`); `SAEConfig.from_dict` reads
both the nested layout and the flat one of SAE folders and checkpoints written before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import product
from typing import TYPE_CHECKING, Any, Literal

from ..config import check_choice, check_positive, flagged, from_flat, nested, positional
from ..data.corpus import CorpusConfig
from ..errors import GreyglassError
from ..models.sites import SITE_KINDS, SiteKind, layer_sites
from ..records import from_json

if TYPE_CHECKING:
    from ..models.lm import LoadedModel

FreqCost = Literal["none", "neglog", "power"]
FREQ_COSTS: tuple[str, ...] = ("none", "neglog", "power")

DEAD_WINDOW_FRACTION = 0.1
"""The default dead window as a fraction of training: a fixed window as long as a short run would never
count a latent dead, so AuxK would never run (the old default, 1M tokens, was the whole default run)."""
DEAD_WINDOW_MAX = 10_000_000
"""The default dead window's ceiling in tokens: Gao et al. call a latent dead after 10M tokens without firing."""


def _check_not_negative(cfg: Any, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) < 0:
            raise GreyglassError(f"{type(cfg).__name__}.{name} must be >= 0, got {getattr(cfg, name)!r}")


@dataclass(frozen=True)
class ReLUConfig:
    """relu: ReLU latents and an L1 penalty weighted by each decoder row's norm (Anthropic, April 2024)."""

    name: str = field(default="relu", init=False)
    l1_coefficient: float = 5.0
    """Weight of the L1 penalty (each latent weighted by its decoder row's norm)."""
    l1_warmup_tokens: int = 0
    """The L1 weight ramps linearly from 0 over this many tokens."""

    def __post_init__(self) -> None:
        _check_not_negative(self, "l1_coefficient", "l1_warmup_tokens")


@dataclass(frozen=True)
class TopKConfig:
    """topk: the k largest pre-activations of each token; AuxK lets dead latents explain the residual error."""

    name: str = field(default="topk", init=False)
    k: int = 32
    """Active latents per token (for batchtopk: per token on average over the batch)."""
    auxk_alpha: float = 1 / 32
    """Weight of the AuxK loss that lets dead latents explain the residual error."""
    k_aux: int = 256
    """Dead latents used by the AuxK loss (at most half of d_in is sensible)."""
    freq_cost_scale: float = 0.5
    """With a frequency-aware cost: latents are selected by pre-activation minus this times their cost
    weight (normalised units, where inputs have norm sqrt(d_in))."""

    def __post_init__(self) -> None:
        for name in ("k", "k_aux"):
            check_positive(type(self).__name__, name, getattr(self, name))
        _check_not_negative(self, "auxk_alpha", "freq_cost_scale")


@dataclass(frozen=True)
class BatchTopKConfig(TopKConfig):
    """batchtopk: the k*N largest pre-activations over a batch of N tokens in training; one learned
    threshold at inference (saved as a JumpReLU, as SAELens does)."""

    name: str = field(default="batchtopk", init=False)


MATRYOSHKA_LEVELS = 5
"""The default ladder's number of nested dictionaries: d_sae/16, d_sae/8, d_sae/4, d_sae/2, d_sae."""


@dataclass(frozen=True)
class MatryoshkaConfig(BatchTopKConfig):
    """matryoshka: BatchTopK whose nested prefixes of latents must each reconstruct on their own
    (Bussmann et al. 2025); the squared errors of every prefix are summed, as in SAELens's
    matryoshka_batchtopk; one learned threshold at inference (saved as a JumpReLU)."""

    name: str = field(default="matryoshka", init=False)
    widths: tuple[int, ...] = flagged("matryoshka_widths", default=())
    """Widths of the nested dictionaries, increasing (d_sae is added as the last if missing);
    default: a halving ladder of --matryoshka-levels widths ending at d_sae."""
    levels: int = flagged("matryoshka_levels", default=MATRYOSHKA_LEVELS)
    """Without --matryoshka-widths: how many nested dictionaries (d_sae / 2^(levels-1), ..., d_sae / 2, d_sae)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("MatryoshkaConfig", "levels", self.levels)
        if any(w <= 0 for w in self.widths) or any(a >= b for a, b in zip(self.widths, self.widths[1:])):
            raise GreyglassError(f"MatryoshkaConfig.widths (--matryoshka-widths) must be positive and strictly "
                                 f"increasing, got {self.widths!r}")

    def prefix_widths(self, d_sae: int) -> tuple[int, ...]:
        """The nested widths for `d_sae` latents, the last being d_sae."""
        if self.widths:
            if self.widths[-1] > d_sae:
                raise GreyglassError(f"MatryoshkaConfig.widths (--matryoshka-widths) {self.widths!r} exceed "
                                     f"d_sae = {d_sae}; give widths up to d_sae")
            return self.widths if self.widths[-1] == d_sae else (*self.widths, d_sae)
        ladder = (d_sae >> i for i in range(self.levels - 1, -1, -1))
        return tuple(sorted({w for w in ladder if w > 0}))


@dataclass(frozen=True)
class JumpReLUConfig:
    """jumprelu: pre * (pre > threshold) with per-latent thresholds trained by a straight-through
    estimator and an L0 penalty (or a target L0)."""

    name: str = field(default="jumprelu", init=False)
    l0_coefficient: float = 1e-3
    """Weight of the L0 penalty (or of the squared deviation from target_l0); with a frequency-aware
    cost each active latent counts its cost weight."""
    target_l0: float | None = None
    """Penalise (L0/target_l0 - 1)^2 instead of L0 itself, to land near a chosen L0."""
    bandwidth: float = flagged("jumprelu_bandwidth", default=0.05)
    """Width of the straight-through rectangle kernel for the threshold gradient (in normalised
    units, where inputs have norm sqrt(d_in): the paper's 0.001 at unit norm, scaled)."""
    init_threshold: float = flagged("jumprelu_init_threshold", default=0.1)
    """Initial threshold of every latent (without target_l0, or with jumprelu_init_from_target off)."""
    init_from_target: bool = flagged("jumprelu_init_from_target", default=True)
    """With target_l0: start every threshold at the first batch's pre-activation level that gives
    L0 = target_l0. Adam moves a threshold by about lr per step, so from a fixed start a short
    run never reaches its target."""

    def __post_init__(self) -> None:
        for name in ("target_l0", "bandwidth", "init_threshold"):
            check_positive("JumpReLUConfig", name, getattr(self, name))
        _check_not_negative(self, "l0_coefficient")


ArchConfig = ReLUConfig | TopKConfig | BatchTopKConfig | MatryoshkaConfig | JumpReLUConfig
ARCHITECTURES: dict[str, type[ArchConfig]] = {c.name: c for c in (ReLUConfig, TopKConfig, BatchTopKConfig,
                                                                  MatryoshkaConfig, JumpReLUConfig)}


@dataclass(frozen=True)
class FreqCostConfig:
    """Frequency-aware sparsity (topk, batchtopk, matryoshka, jumprelu): each latent's cost falls with its firing rate."""

    form: FreqCost = flagged("freq_cost", default="none")
    """How a latent's cost falls with its firing rate p: neglog (-log p / log d_in), power
    ((p d_in)^-freq_cost_power), or none (every latent costs 1)."""
    power: float = flagged("freq_cost_power", default=0.5)
    """The exponent of the power form."""
    floor: float = flagged("freq_cost_floor", default=0.25)
    """Smallest cost weight (1 is the cost of a latent firing at rate 1/d_in), so no latent is free."""
    ceiling: float = flagged("freq_cost_ceiling", default=4.0)
    """Largest cost weight, so rare latents can still fire."""
    decay: float = flagged("freq_cost_decay", default=0.999)
    """Per-step decay of the moving average of firing rates behind the cost weights."""

    def __post_init__(self) -> None:
        check_choice("FreqCostConfig", "form", self.form, FREQ_COSTS)
        if not 0 <= self.decay < 1:
            raise GreyglassError(f"FreqCostConfig.decay (--freq-cost-decay) must be in [0, 1), got {self.decay!r}")
        if not 0 < self.floor <= self.ceiling:
            raise GreyglassError(f"FreqCostConfig.floor (--freq-cost-floor) must be > 0 and <= the ceiling, got "
                                 f"{self.floor!r} and {self.ceiling!r}")
        _check_not_negative(self, "power")

    @property
    def on(self) -> bool:
        return self.form != "none"


@dataclass(frozen=True)
class SAEConfig:
    """One sparse autoencoder: architecture, sizes, sparsity settings and the site it reads."""

    arch: ArchConfig = flagged("architecture", default_factory=TopKConfig)
    """relu (L1 penalty), topk, batchtopk (top k*batch over the batch), matryoshka (batchtopk with nested
    prefix losses) or jumprelu (learned thresholds), with that architecture's own settings."""
    d_in: int = 576
    """Input width: the model's d_model at the site."""
    d_sae: int = 4608
    """Number of latents (dictionary size)."""
    freq_cost: FreqCostConfig = field(default_factory=FreqCostConfig)
    """Frequency-aware sparsity (all but relu)."""
    dead_tokens: int | None = None
    """A latent is dead (and AuxK trains it) once it has not fired for this many training tokens; unset: a
    tenth of the training tokens, at most 10M (Gao et al.'s window) and at least one batch."""
    b_dec_init: Literal["geometric_median", "mean", "zeros"] = "geometric_median"
    """How b_dec starts: the geometric median or mean of the first batch, or zeros."""
    norm_scale: float | None = None
    """Inputs are multiplied by this so their mean norm is sqrt(d_in); None: estimated from the first batch."""
    model_name: str = ""
    """The model the SAE reads (its greyglass spec or hub id), for provenance and SAELens metadata."""
    hook_name: str = ""
    """The site, as a TransformerLens hook name, e.g. blocks.15.hook_resid_post."""
    context_size: int = 128
    """Tokens per window the activations were taken from."""
    prepend_bos: bool = True
    """Whether windows started with BOS."""

    def __post_init__(self) -> None:
        if not isinstance(self.arch, tuple(ARCHITECTURES.values())):
            raise GreyglassError(f"SAEConfig.arch must be one of {', '.join(c.__name__ for c in ARCHITECTURES.values())}, "
                                 f"got {self.arch!r}")
        if self.freq_cost.on and isinstance(self.arch, ReLUConfig):
            raise GreyglassError("SAEConfig.freq_cost needs architecture topk, batchtopk or jumprelu (relu has an L1 "
                                 "penalty, not an L0 one)")
        check_choice("SAEConfig", "b_dec_init", self.b_dec_init, ("geometric_median", "mean", "zeros"))
        for name in ("d_in", "d_sae", "dead_tokens", "norm_scale", "context_size"):
            check_positive("SAEConfig", name, getattr(self, name))
        if isinstance(self.arch, TopKConfig) and self.arch.k > self.d_sae:
            raise GreyglassError(f"SAEConfig.arch.k = {self.arch.k} is larger than d_sae = {self.d_sae}; "
                                 "choose k <= d_sae")
        if isinstance(self.arch, MatryoshkaConfig):
            self.arch.prefix_widths(self.d_sae)  # raises on widths this d_sae cannot hold

    @property
    def architecture(self) -> str:
        return self.arch.name

    def with_updates(self, **changes: Any) -> SAEConfig:
        return replace(self, **changes)

    def with_k(self, k: int) -> SAEConfig:
        """This config with TopK's (or BatchTopK's) k set; an architecture without a k is unchanged."""
        return replace(self, arch=replace(self.arch, k=k)) if isinstance(self.arch, TopKConfig) else self

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "SAE config") -> SAEConfig:
        """An `SAEConfig` from `asdict` output: nested, or flat as greyglass wrote it before the
        architectures had their own configs (`architecture`, `k`, `jumprelu_bandwidth`, ...)."""
        return from_json(cls, data, where) if "arch" in data else from_flat(cls, data)


@dataclass(frozen=True)
class TrainConfig:
    """How SAEs are trained: tokens, batch, optimiser, schedule, checkpoints."""

    tokens: int = 1_000_000
    """Training tokens (the store is read again, reshuffled, if it holds fewer)."""
    batch_size: int = 4096
    """Tokens per optimiser step."""
    lr: float = 2e-4
    """Adam learning rate at its peak."""
    warmup_steps: int = 100
    """Steps of linear learning-rate warm-up from 0."""
    decay_fraction: float = 0.2
    """Final fraction of training over which the learning rate decays linearly to 0."""
    adam_betas: tuple[float, ...] = (0.9, 0.999)
    """Adam's beta1 and beta2."""
    seed: int = 0
    """Seed for initialisation and data order; the same seed gives the same weights."""
    checkpoint_every: int = 0
    """Write a resumable checkpoint every this many tokens (0: only on Ctrl-C and at the end)."""
    buffer_tokens: int = 65_536
    """Activations (rows) kept in the shuffling buffer, from a store or on the fly."""

    def __post_init__(self) -> None:
        for name in ("tokens", "batch_size", "lr", "buffer_tokens"):
            check_positive("TrainConfig", name, getattr(self, name))
        if self.warmup_steps < 0 or self.checkpoint_every < 0:
            raise GreyglassError("TrainConfig.warmup_steps and checkpoint_every must be >= 0")
        if not 0 <= self.decay_fraction <= 1:
            raise GreyglassError(f"TrainConfig.decay_fraction must be in [0, 1], got {self.decay_fraction}")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise GreyglassError(f"TrainConfig.adam_betas must be two numbers in [0, 1), got {self.adam_betas}")

    @property
    def steps(self) -> int:
        return -(-self.tokens // self.batch_size)


def with_dead_window(cfg: SAEConfig, tcfg: TrainConfig) -> SAEConfig:
    """`cfg` with `dead_tokens` set: as given, or by default a fraction of this run's training tokens."""
    if cfg.dead_tokens is not None:
        return cfg
    window = min(DEAD_WINDOW_MAX, int(DEAD_WINDOW_FRACTION * tcfg.tokens))
    return cfg.with_updates(dead_tokens=max(tcfg.batch_size, window))


@dataclass(frozen=True)
class MetricsConfig:
    """How much held-out text to evaluate on."""

    tokens: int = 20_000
    """Held-out tokens to evaluate on, at least (whole batches of windows; each window's first position excluded)."""
    batch_windows: int = 8
    """Windows per forward pass."""

    def __post_init__(self) -> None:
        check_positive("MetricsConfig", "tokens", self.tokens)
        check_positive("MetricsConfig", "batch_windows", self.batch_windows)


@dataclass(frozen=True)
class AbsorptionConfig:
    """The first-letter absorption benchmark (thresholds as in SAEBench's absorption_first_letter)."""

    words: int = 2000
    """At most this many single-token words from the vocabulary (a seeded sample)."""
    min_letters: int = 2
    """Shortest word, in letters."""
    leading_space: bool = True
    """Only tokens that start with a space (whole words, not pieces like `ouraging`)."""
    icl_examples: int = 2
    """In-context examples before each prompt (`tiger has the first letter: T`)."""
    template: str = "{word} has the first letter:"
    """The prompt; {word} is the vocabulary token."""
    min_words_per_letter: int = 10
    """Letters with fewer words are skipped (too few to fit a probe)."""
    test_fraction: float = 0.3
    """Words held out: the probes' and k-sparse probes' F1 and the absorption scores use only these
    (SAEBench holds out 0.2 of the whole vocabulary; a 2,000-word sample needs a larger share)."""
    max_k: int = 10
    """Largest number of main latents per letter."""
    f1_jump: float = 0.03
    """k-sparse probing adds a latent only while it raises F1 by more than this."""
    min_probe_f1: float = 0.6
    """Letters whose probe has test F1 at most this are left out of the headline means (the model
    does not represent the letter well enough there to call a silent latent absorbed)."""
    full_cos_threshold: float = 0.025
    """Full absorption: the top-projecting latent's decoder row has at least this cosine with the probe."""
    fraction_cos_threshold: float = 0.1
    """Absorption fraction: candidate absorbing latents have at least this decoder cosine with the probe."""
    max_absorbing_latents: int = 3
    """Absorption fraction: at most this many candidate latents (the largest projections) are summed."""
    share_threshold: float = 0.4
    """Both: the absorbing latent(s) carry at least this share of the word's projection on the probe."""
    latent_probe_min_steps: int = 0
    """Least Adam steps for the L1 probe that ranks the main latents. 0 is SAEBench's schedule (50
    epochs, about 50 steps on a 2,000-word sample, which leaves that probe near its random start, so the
    split-feature count is noisy there); e.g. 300 ranks latents by what they predict, a variant that
    reads more split features than SAEBench does."""
    batch_size: int = 64
    """Prompts per forward pass."""
    seed: int = 0
    """Seed for the word sample, the train/test split and the probes."""

    def __post_init__(self) -> None:
        for name in ("words", "min_letters", "min_words_per_letter", "max_k", "max_absorbing_latents", "batch_size"):
            check_positive("AbsorptionConfig", name, getattr(self, name))
        if "{word}" not in self.template:
            raise GreyglassError(f"AbsorptionConfig.template must contain {{word}}, got {self.template!r}")
        for name in ("test_fraction", "f1_jump", "min_probe_f1", "full_cos_threshold", "fraction_cos_threshold",
                     "share_threshold"):
            if not 0 <= getattr(self, name) < 1:
                raise GreyglassError(f"AbsorptionConfig.{name} must be in [0, 1), got {getattr(self, name)!r}")


SPARSE_PROBING_TASKS: tuple[str, ...] = ("first_letter", "cities", "language", "sycophancy")


@dataclass(frozen=True)
class SparseProbingConfig:
    """Sparse probing (SAEBench-style) on the bundled binary tasks (`sae.sparse_probing`)."""

    tasks: tuple[str, ...] = flagged("task", default=SPARSE_PROBING_TASKS)
    """Tasks (repeatable): first_letter (word starts with a vowel), cities (true statement), language (English or
    French NTREX sentence), sycophancy (the answer agrees with the user's stated view)."""
    ks: tuple[int, ...] = flagged("probe_k", default=(1, 2, 5, 20))
    """Latents per sparse probe (repeatable), chosen by the difference of class means on the train split."""
    examples: int = 600
    """At most this many examples per task."""
    test_fraction: float = 0.3
    """Share of each task's units (words, statement pairs, NTREX lines, questions) held out for testing."""
    batch_size: int = 32
    """Texts per forward pass."""
    seed: int = 0
    """Seed for the samples, the split and the probes."""

    def __post_init__(self) -> None:
        for task in self.tasks:
            check_choice("SparseProbingConfig", "tasks", task, SPARSE_PROBING_TASKS)
        if not self.tasks or not self.ks or any(k <= 0 for k in self.ks):
            raise GreyglassError(f"SparseProbingConfig needs at least one task and positive ks (--probe-k), got "
                                 f"{self.tasks!r} and {self.ks!r}")
        check_positive("SparseProbingConfig", "examples", self.examples)
        check_positive("SparseProbingConfig", "batch_size", self.batch_size)
        if not 0 < self.test_fraction < 1:
            raise GreyglassError(f"SparseProbingConfig.test_fraction must be in (0, 1), got {self.test_fraction!r}")


@dataclass(frozen=True)
class MetaConfig:
    """How the meta-SAE is trained and read."""

    meta_latents: int = 0
    """Number of meta-latents (0: d_sae / 16, as Bussmann et al.'s 2304 for 49152, roughly)."""
    k: int = 4
    """Meta-latents per decoder row, on average (BatchTopK)."""
    steps: int = 2000
    """Optimiser steps over shuffled decoder rows."""
    batch_size: int = 1024
    """Decoder rows per step (at most d_sae)."""
    lr: float = 1e-3
    """Adam learning rate."""
    strong_share: float = 0.25
    """A meta-latent is strong in a latent when its value is at least this share of the latent's largest."""
    min_cos: float = 0.7
    """A latent is flagged compositional when >= 2 meta-latents are strong and the meta-SAE
    reconstructs its row with at least this cosine."""
    members: int = 10
    """Member latents listed per meta-latent."""
    top_tokens: int = 5
    """Logit-lens tokens listed per latent and meta-latent."""
    seed: int = 0
    """Seed for the meta-SAE's initialisation and row order."""

    def __post_init__(self) -> None:
        for name in ("k", "steps", "batch_size", "lr", "members", "top_tokens"):
            check_positive("MetaConfig", name, getattr(self, name))
        if self.meta_latents < 0:
            raise GreyglassError(f"MetaConfig.meta_latents must be >= 0, got {self.meta_latents}")
        for name in ("strong_share", "min_cos"):
            if not 0 < getattr(self, name) <= 1:
                raise GreyglassError(f"MetaConfig.{name} must be in (0, 1], got {getattr(self, name)!r}")


# ---- the jobs' configs ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelChoice:
    """The model an SAE job runs: the one the SAE's folder names, unless --model says otherwise.

    The SAE jobs take these flags themselves instead of the CLI's usual --model, whose default
    (the default model) would override what the SAE records."""

    model: str | None = None
    """Embedded name (smollm2-135m-instruct, gemma3-270m), local Hugging Face folder, .gguf file or hub id;
    default: the model the SAE was trained on (its cfg.json's model_name), else smollm2-135m-instruct."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """dtype to run the model in."""
    device: str = "cpu"
    """torch device for the model and the SAEs."""

    def load(self, named: str | None) -> LoadedModel:
        """The model: --model, else `named` (what the SAE or store records), else the default model."""
        from ..models.loader import DEFAULT_MODEL, load_model  # torch: only when a run needs it

        return load_model(self.model or named or DEFAULT_MODEL, dtype=self.dtype, device=self.device)


SAE_FROM_DATA = ("d_in", "d_sae", "k", "model_name", "hook_name", "context_size", "prepend_bos", "norm_scale")
"""SAEConfig fields (and flags) `sae train` takes from the data and its own --site, --k, --d-sae, --expansion."""


def parse_layers(text: str) -> list[int]:
    """`0-29`, `0,4,8` or `0-3,10` -> the layers, in the order given (a range in increasing order)."""
    layers: list[int] = []
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        if not (lo.isdigit() and (hi.isdigit() if dash else not hi)) or (dash and int(hi) < int(lo)):
            raise GreyglassError(f"--layers {text!r}: {part.strip()!r} is not a layer or an increasing range; write "
                                 "e.g. 0-29, 0,4,8 or 0-3,10")
        layers.extend(range(int(lo), int(hi if dash else lo) + 1))
    return list(dict.fromkeys(layers))


@dataclass(frozen=True)
class TrainRunConfig:
    """`sae train`: one SAE per (--site, --k), all from one pass over a store or over the model's activations."""

    store: str | None = None
    """Activation store folder (from `greyglass capture`); without one the model runs over --corpus on the fly."""
    sites: tuple[str, ...] = flagged("site", default=())
    """Site to train on (repeatable); default: every site of the store. Needed on the fly (or --layers)."""
    layers: str | None = None
    """Layers to train on, a range or a list (0-29, 0,4,8 or 0-3,10): one --site-kind site each, after --site."""
    site_kind: SiteKind = "resid_post"
    """The kind of site --layers names: resid_post, resid_pre, attn_out or mlp_out."""
    ks: tuple[int, ...] = flagged("k", default=(32,))
    """Active latents per token for topk/batchtopk (repeatable: one SAE each)."""
    expansion: int = 8
    """d_sae = expansion * d_in."""
    d_sae: int | None = None
    """Number of latents (overrides --expansion)."""
    sae: SAEConfig = nested(SAEConfig, skip=SAE_FROM_DATA)
    """Every SAE's architecture and sparsity settings; width, site and model come from the data and the flags above."""
    train: TrainConfig = field(default_factory=TrainConfig)
    corpus: CorpusConfig = nested(lambda: CorpusConfig(split="train"), skip=("seed", "split"))
    """On the fly: the text. Its train split is read (every 20th document stays out for `sae eval`), in
    the order the training seed gives (`training_corpus`)."""
    model: ModelChoice = field(default_factory=ModelChoice)
    distribute_sites: bool = False
    """Under torchrun: each rank trains the SAEs of its share of the sites (round robin) on the whole batch,
    gathered from every rank's forward passes, instead of every rank training every SAE on its own rows."""
    dist_timeout: float = 600.0
    """Under torchrun: seconds a rank waits for the others before the run fails (a dead rank is noticed at once)."""

    def __post_init__(self) -> None:
        for name in ("expansion", "d_sae", "dist_timeout"):
            check_positive("TrainRunConfig", name, getattr(self, name))
        check_choice("TrainRunConfig", "site_kind", self.site_kind, SITE_KINDS)
        if not self.ks or any(k <= 0 for k in self.ks):
            raise GreyglassError(f"TrainRunConfig.ks (--k) must be positive integers, got {self.ks!r}")
        if self.store is None and not self.all_sites():
            raise GreyglassError("give --store, or --site or --layers (with --model and --corpus) to train on the fly")
        if self.store is not None and self.model.model is not None:
            raise GreyglassError("--model is for training on the fly: a store's activations come from the model that "
                                 "captured them; leave out --model or --store")

    def all_sites(self) -> tuple[str, ...]:
        """--site, then the --layers sites not already named (empty: every site of the store)."""
        named = layer_sites(parse_layers(self.layers), self.site_kind) if self.layers is not None else []
        return tuple(dict.fromkeys([*self.sites, *named]))

    def training_corpus(self) -> CorpusConfig:
        """The text of on-the-fly training: the train split, in the training seed's order."""
        return replace(self.corpus, split="train", seed=self.train.seed)

    def sae_configs(self, sites: Sequence[str], d_in: int, **facts: Any) -> list[SAEConfig]:
        """One SAE per (site, k): the cross product asked for (one per site for an architecture without k)."""
        ks = self.ks if isinstance(self.sae.arch, TopKConfig) else self.ks[:1]
        d_sae = self.d_sae or self.expansion * d_in
        return [replace(self.sae, hook_name=s, d_in=d_in, d_sae=d_sae, **facts).with_k(k) for s, k in product(sites, ks)]


@dataclass(frozen=True)
class MetricsRunConfig:
    """`sae eval`: an SAE on held-out text."""

    sae: str = positional()
    """SAE folder (greyglass or SAELens)."""
    site: str | None = None
    """Site to splice the SAE into (default: the SAE's own)."""
    unverified_text: bool = False
    """Evaluate even when the text cannot be shown to share no document with the SAE's training text (a
    SAELens SAE, another corpus, training on split all); the results then say so."""
    context_size: int | None = None
    """Tokens per window (default: the SAE's own context size)."""
    eval: MetricsConfig = field(default_factory=MetricsConfig)
    corpus: CorpusConfig = nested(lambda: CorpusConfig(split="heldout"), skip=("split", "context_size"))
    """The text: its heldout split (every 20th document), which an SAE trained on the same corpus never saw."""
    model: ModelChoice = field(default_factory=ModelChoice)

    def __post_init__(self) -> None:
        check_positive("MetricsRunConfig", "context_size", self.context_size)

    def eval_corpus(self, sae_context_size: int) -> CorpusConfig:
        """The text evaluated on: the heldout split, in windows of --context-size or the SAE's own."""
        return replace(self.corpus, split="heldout", context_size=self.context_size or sae_context_size)


@dataclass(frozen=True)
class CalibrateRunConfig:
    """`sae calibrate`: shift a BatchTopK, Matryoshka or JumpReLU SAE's thresholds so its L0 is a chosen value."""

    sae: str = positional()
    """SAE folder (greyglass, or a SAELens JumpReLU)."""
    l0: float | None = None
    """Target L0 (default: the SAE's own target from its training.json: k, or a JumpReLU's target_l0)."""
    tokens: int = 8_000
    """Rows of text to calibrate on (first positions and outlier rows left out, as in training)."""
    eval_tokens: int = MetricsConfig.tokens
    """Held-out tokens left to evaluation: calibration reads the held-out split after the windows that
    `sae eval --tokens` this many reads (default: sae eval's default)."""
    context_size: int | None = None
    """Tokens per window (default: the SAE's own context size)."""
    corpus: CorpusConfig = nested(lambda: CorpusConfig(split="heldout"), skip=("split", "context_size"))
    """The text: its held-out split, after what evaluation reads (an SAE fires fewer latents on the text it
    trained on, so an L0 matched there overshoots on new text)."""
    model: ModelChoice = field(default_factory=ModelChoice)

    def __post_init__(self) -> None:
        for name in ("l0", "tokens", "eval_tokens", "context_size"):
            check_positive("CalibrateRunConfig", name, getattr(self, name))

    def calibration_corpus(self, sae_context_size: int) -> CorpusConfig:
        """The text calibrated on: the held-out split, in windows of --context-size or the SAE's own."""
        return replace(self.corpus, split="heldout", context_size=self.context_size or sae_context_size)


@dataclass(frozen=True)
class AbsorptionRunConfig:
    """`sae absorption`: the first-letter absorption benchmark on an SAE."""

    sae: str = positional()
    """SAE folder (greyglass or SAELens)."""
    site: str | None = None
    """Site the SAE reads (default: the SAE's own)."""
    absorption: AbsorptionConfig = field(default_factory=AbsorptionConfig)
    model: ModelChoice = field(default_factory=ModelChoice)


@dataclass(frozen=True)
class SparseProbingRunConfig:
    """`sae sparse-probing`: how well the SAE's top-k latents classify the bundled binary tasks, against the raw site."""

    sae: str = positional()
    """SAE folder (greyglass or SAELens)."""
    site: str | None = None
    """Site the SAE reads (default: the SAE's own)."""
    probing: SparseProbingConfig = field(default_factory=SparseProbingConfig)
    model: ModelChoice = field(default_factory=ModelChoice)


@dataclass(frozen=True)
class DetectorRunConfig:
    """`sae absorption-weights`: absorbing latent pairs from an SAE's weights alone."""

    sae: str = positional()
    """SAE folder (greyglass or SAELens)."""
    top: int = 1000
    """Pairs to keep."""
    block: int = 1024
    """Parents scored at once (memory is O(block * d_sae))."""
    rates: bool = True
    """Use the saved firing rates (sparsity.safetensors): a parent fires at least as often as its child."""
    ground_truth: str | None = None
    """A `greyglass sae absorption` run folder of the same SAE to validate against."""

    def __post_init__(self) -> None:
        check_positive("DetectorRunConfig", "top", self.top)
        check_positive("DetectorRunConfig", "block", self.block)


@dataclass(frozen=True)
class MetaRunConfig:
    """`sae meta`: a meta-SAE on an SAE's decoder rows."""

    sae: str = positional()
    """SAE folder (greyglass or SAELens)."""
    lens: bool = True
    """List each latent's and meta-latent's logit-lens tokens (--no-lens: no model is loaded)."""
    meta: MetaConfig = field(default_factory=MetaConfig)
    model: ModelChoice = field(default_factory=ModelChoice)


@dataclass(frozen=True)
class FreqExperimentConfig:
    """`sae freq-experiment`: TopK and JumpReLU with and without frequency-aware sparsity at matched L0."""

    site: str = "blocks.15.hook_resid_post"
    """Site (default: the mid-depth residual stream of the 30-layer default model)."""
    l0s: tuple[int, ...] = (16, 64)
    """L0 values to match (one TopK k and one JumpReLU target each)."""
    expansion: int = 8
    """d_sae = expansion * d_model."""
    freq_cost: FreqCost = "neglog"
    """Form of the frequency-aware cost for the frequency-aware variants."""
    freq_cost_scale: float = 0.5
    """TopK: selection uses pre-activation minus this times the cost weight."""
    l0_coefficient: float = 100.0
    """JumpReLU: weight of (L0 / target - 1)^2; large because it competes with a squared error summed
    over d_in dimensions (inputs of norm sqrt(d_in)): at 1 the L0 drifts far from its target."""
    eval_tokens: int = 20_000
    """Held-out tokens for explained variance and CE loss recovered."""
    train: TrainConfig = field(default_factory=TrainConfig)
    corpus: CorpusConfig = nested(lambda: CorpusConfig(split="train"), skip=("seed", "split"))
    """The text: its train split trains, its heldout split evaluates; in the training seed's order."""
    absorption: AbsorptionConfig = nested(AbsorptionConfig, skip=("batch_size", "seed"))
    """The first-letter benchmark of every SAE (seeded by the training seed)."""

    def __post_init__(self) -> None:
        if not self.l0s or any(k <= 0 for k in self.l0s):
            raise GreyglassError(f"FreqExperimentConfig.l0s must be positive integers, got {self.l0s!r}")
        if self.freq_cost == "none" or self.freq_cost not in FREQ_COSTS:
            raise GreyglassError(f"FreqExperimentConfig.freq_cost must be one of neglog, power; got {self.freq_cost!r}")
        for name in ("expansion", "freq_cost_scale", "l0_coefficient", "eval_tokens"):
            check_positive("FreqExperimentConfig", name, getattr(self, name))

    def training_corpus(self) -> CorpusConfig:
        """The text the SAEs train on: the train split, in the training seed's order."""
        return replace(self.corpus, split="train", seed=self.train.seed)

    def absorption_settings(self) -> AbsorptionConfig:
        """The first-letter benchmark, seeded by the training seed."""
        return replace(self.absorption, seed=self.train.seed)


COMPARE_ARCHITECTURES = ("topk", "batchtopk", "matryoshka", "jumprelu")
COMPARE_VARIANTS = ("topk", "batchtopk", "matryoshka", "jumprelu", "batchtopk+freq", "jumprelu+freq")
"""`sae compare`'s default set: every architecture with an L0 to match, and the frequency-aware BatchTopK and JumpReLU."""


@dataclass(frozen=True)
class CompareConfig:
    """`sae compare`: several SAEs from one pass over the same activations, at matched L0 and widths, on one table."""

    site: str = "blocks.15.hook_resid_post"
    """Site (default: the mid-depth residual stream of the 30-layer default model)."""
    variants: tuple[str, ...] = flagged("variant", default=COMPARE_VARIANTS)
    """SAEs to compare (repeatable): topk, batchtopk, matryoshka, jumprelu, each optionally +freq (the
    frequency-aware cost, e.g. batchtopk+freq)."""
    l0s: tuple[int, ...] = (16, 64)
    """L0 values to match (k for the TopK family, target_l0 for JumpReLU)."""
    widths: tuple[int, ...] = flagged("width", default=(4608,))
    """Dictionary sizes (repeatable: each variant at each L0 and width)."""
    freq_cost: FreqCost = "neglog"
    """Form of the frequency-aware cost for the +freq variants."""
    freq_cost_scale: float = 0.5
    """TopK family with the cost: selection uses pre-activation minus this times the cost weight."""
    l0_coefficient: float = 100.0
    """JumpReLU: weight of (L0 / target - 1)^2 (as in `sae freq-experiment`)."""
    matryoshka_levels: int = MATRYOSHKA_LEVELS
    """Matryoshka: nested dictionaries in the halving ladder ending at the width."""
    eval_tokens: int = 20_000
    """Held-out tokens for explained variance, the loss increase and CE loss recovered."""
    calibrate: bool = False
    """Before evaluating, shift each BatchTopK, Matryoshka and JumpReLU SAE's thresholds so that its L0 on
    the first eval-tokens rows of the training text is its target (a variant: the published BatchTopK rule
    is the running-average threshold); the calibrated SAE is saved as <folder>-calibrated and evaluated."""
    train: TrainConfig = field(default_factory=TrainConfig)
    corpus: CorpusConfig = nested(lambda: CorpusConfig(split="train"), skip=("seed", "split"))
    """The text: its train split trains, its heldout split evaluates; in the training seed's order."""
    absorption: AbsorptionConfig = nested(AbsorptionConfig, skip=("batch_size", "seed"))
    """The first-letter benchmark of every SAE (seeded by the training seed)."""
    probing: SparseProbingConfig = nested(SparseProbingConfig, skip=("test_fraction", "batch_size", "seed"))
    """Sparse probing of every SAE (seeded by the training seed; the activations are read once for all SAEs)."""

    def __post_init__(self) -> None:
        for variant in self.variants:
            arch, _, cost = variant.partition("+")
            if arch not in COMPARE_ARCHITECTURES or cost not in ("", "freq"):
                raise GreyglassError(f"CompareConfig.variants (--variant): {variant!r} is not one of "
                                     f"{', '.join(COMPARE_ARCHITECTURES)}, optionally followed by +freq")
        if not self.variants or not self.l0s or not self.widths or any(v <= 0 for v in (*self.l0s, *self.widths)):
            raise GreyglassError("CompareConfig needs at least one --variant, and positive --l0s and --width values")
        if self.freq_cost == "none" or self.freq_cost not in FREQ_COSTS:
            raise GreyglassError(f"CompareConfig.freq_cost must be one of neglog, power; got {self.freq_cost!r}")
        for name in ("freq_cost_scale", "l0_coefficient", "matryoshka_levels", "eval_tokens"):
            check_positive("CompareConfig", name, getattr(self, name))

    def training_corpus(self) -> CorpusConfig:
        """The text the SAEs train on: the train split, in the training seed's order."""
        return replace(self.corpus, split="train", seed=self.train.seed)

    def absorption_settings(self) -> AbsorptionConfig:
        return replace(self.absorption, seed=self.train.seed)

    def probing_settings(self) -> SparseProbingConfig:
        return replace(self.probing, seed=self.train.seed)

    def sae_configs(self, base: SAEConfig) -> list[tuple[str, int, SAEConfig]]:
        """(variant, L0, SAEConfig) for every row: each width, then each L0, then each variant."""
        rows = []
        for width, l0, variant in product(self.widths, self.l0s, self.variants):
            arch, _, cost = variant.partition("+")
            topk = {"k": l0, "freq_cost_scale": self.freq_cost_scale}
            settings = {"topk": lambda: TopKConfig(**topk), "batchtopk": lambda: BatchTopKConfig(**topk),
                        "matryoshka": lambda: MatryoshkaConfig(**topk, levels=self.matryoshka_levels),
                        "jumprelu": lambda: JumpReLUConfig(target_l0=float(l0), l0_coefficient=self.l0_coefficient)}
            freq = FreqCostConfig(form=self.freq_cost) if cost else FreqCostConfig()
            rows.append((variant, l0, replace(base, arch=settings[arch](), d_sae=width, freq_cost=freq)))
        return rows
