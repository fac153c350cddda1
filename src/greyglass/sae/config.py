"""Configs for sparse autoencoders: `SAEConfig` (what the SAE is) and `TrainConfig` (how it is trained).

`SAEConfig` holds the sizes, the architecture with its own sparsity settings (`arch`: one of
`ReLUConfig`, `TopKConfig`, `BatchTopKConfig`, `JumpReLUConfig`), the frequency-aware cost
(`freq_cost`), the input normalisation and where the SAE reads from (model, site, context
size), so a saved SAE carries everything an evaluation or a later analysis needs.
`TrainConfig` holds the optimiser and the schedule, shared by every SAE trained from one pass
over the data.

The nested configs keep today's flags (`--architecture`, `--k`, `--l1-coefficient`,
`--jumprelu-bandwidth`, `--freq-cost`, ...: `greyglass.config`); `SAEConfig.from_dict` reads
both the nested layout and the flat one of SAE folders and checkpoints written before.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ..config import check_choice, check_positive, flagged, from_dict, from_flat
from ..errors import GreyglassError
from .frequency import FREQ_COSTS, FreqCost

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


ArchConfig = ReLUConfig | TopKConfig | BatchTopKConfig | JumpReLUConfig
ARCHITECTURES: dict[str, type[ArchConfig]] = {c.name: c for c in (ReLUConfig, TopKConfig, BatchTopKConfig, JumpReLUConfig)}


@dataclass(frozen=True)
class FreqCostConfig:
    """Frequency-aware sparsity (topk, batchtopk, jumprelu): each latent's cost falls with its firing rate."""

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
    """relu (L1 penalty), topk, batchtopk (top k*batch over the batch) or jumprelu (learned thresholds),
    with that architecture's own settings."""
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
        return from_dict(cls, data, where) if "arch" in data else from_flat(cls, data)


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
    """On-the-fly training: activations kept in the shuffling buffer."""

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
