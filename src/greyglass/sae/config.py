"""Configs for sparse autoencoders: `SAEConfig` (what the SAE is) and `TrainConfig` (how it is trained).

`SAEConfig` holds the architecture, its sparsity hyper-parameters, the input normalisation
and where the SAE reads from (model, site, context size), so a saved SAE carries everything
an evaluation or a later analysis needs. `TrainConfig` holds the optimiser and the schedule,
shared by every SAE trained from one pass over the data.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from ..config import check_choice, check_positive
from ..errors import GreyglassError
from .frequency import FREQ_COSTS, FreqCost

Architecture = Literal["relu", "topk", "batchtopk", "jumprelu"]
ARCHITECTURES: tuple[str, ...] = ("relu", "topk", "batchtopk", "jumprelu")
DEAD_WINDOW_FRACTION = 0.1
"""The default dead window as a fraction of training: a fixed window as long as a short run would never
count a latent dead, so AuxK would never run (the old default, 1M tokens, was the whole default run)."""
DEAD_WINDOW_MAX = 10_000_000
"""The default dead window's ceiling in tokens: Gao et al. call a latent dead after 10M tokens without firing."""


@dataclass(frozen=True)
class SAEConfig:
    """One sparse autoencoder: architecture, sizes, sparsity settings and the site it reads."""

    architecture: Architecture = "topk"
    """relu (L1 penalty), topk, batchtopk (top k*batch over the batch) or jumprelu (learned thresholds)."""
    d_in: int = 576
    """Input width: the model's d_model at the site."""
    d_sae: int = 4608
    """Number of latents (dictionary size)."""
    k: int = 32
    """Active latents per token for topk and batchtopk (mean per token for batchtopk)."""
    l1_coefficient: float = 5.0
    """relu: weight of the L1 penalty (each latent weighted by its decoder row's norm)."""
    l1_warmup_tokens: int = 0
    """relu: the L1 weight ramps linearly from 0 over this many tokens."""
    auxk_alpha: float = 1 / 32
    """topk/batchtopk: weight of the AuxK loss that lets dead latents explain the residual error."""
    k_aux: int = 256
    """topk/batchtopk: dead latents used by the AuxK loss (at most half of d_in is sensible)."""
    dead_tokens: int | None = None
    """A latent is dead (and AuxK trains it) once it has not fired for this many training tokens; unset: a
    tenth of the training tokens, at most 10M (Gao et al.'s window) and at least one batch."""
    l0_coefficient: float = 1e-3
    """jumprelu: weight of the L0 penalty (or of the squared deviation from target_l0)."""
    target_l0: float | None = None
    """jumprelu: penalise (L0/target_l0 - 1)^2 instead of L0 itself, to land near a chosen L0."""
    jumprelu_bandwidth: float = 0.05
    """jumprelu: width of the straight-through rectangle kernel for the threshold gradient (in
    normalised units, where inputs have norm sqrt(d_in): the paper's 0.001 at unit norm, scaled)."""
    jumprelu_init_threshold: float = 0.1
    """jumprelu: initial threshold of every latent (without target_l0, or with jumprelu_init_from_target off)."""
    jumprelu_init_from_target: bool = True
    """jumprelu with target_l0: start every threshold at the first batch's pre-activation level that
    gives L0 = target_l0. Adam moves a threshold by about lr per step, so from a fixed start a short
    run never reaches its target."""
    freq_cost: FreqCost = "none"
    """Frequency-aware sparsity (all but relu): each latent's cost falls with its firing rate p:
    neglog (-log p / log d_in), power ((p d_in)^-freq_cost_power), or none (every latent costs 1)."""
    freq_cost_power: float = 0.5
    """freq_cost power: the exponent."""
    freq_cost_floor: float = 0.25
    """Smallest cost weight (1 is the cost of a latent firing at rate 1/d_in), so no latent is free."""
    freq_cost_ceiling: float = 4.0
    """Largest cost weight, so rare latents can still fire."""
    freq_cost_scale: float = 0.5
    """topk/batchtopk: latents are selected by pre-activation minus this times their cost weight
    (normalised units, where inputs have norm sqrt(d_in)); jumprelu uses l0_coefficient instead."""
    freq_cost_decay: float = 0.999
    """Per-step decay of the moving average of firing rates behind the cost weights."""
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
        check_choice("SAEConfig", "architecture", self.architecture, ARCHITECTURES)
        check_choice("SAEConfig", "freq_cost", self.freq_cost, FREQ_COSTS)
        if self.freq_cost != "none" and self.architecture == "relu":
            raise GreyglassError("SAEConfig.freq_cost needs architecture topk, batchtopk or jumprelu (relu has an L1 "
                                 "penalty, not an L0 one)")
        if not 0 <= self.freq_cost_decay < 1:
            raise GreyglassError(f"SAEConfig.freq_cost_decay must be in [0, 1), got {self.freq_cost_decay!r}")
        if not 0 < self.freq_cost_floor <= self.freq_cost_ceiling:
            raise GreyglassError(f"SAEConfig.freq_cost_floor must be > 0 and <= freq_cost_ceiling, got "
                                 f"{self.freq_cost_floor!r} and {self.freq_cost_ceiling!r}")
        check_choice("SAEConfig", "b_dec_init", self.b_dec_init, ("geometric_median", "mean", "zeros"))
        for name in ("d_in", "d_sae", "k", "k_aux", "dead_tokens", "jumprelu_bandwidth",
                     "jumprelu_init_threshold", "norm_scale", "target_l0", "context_size"):
            check_positive("SAEConfig", name, getattr(self, name))
        for name in ("l1_coefficient", "auxk_alpha", "l0_coefficient", "l1_warmup_tokens", "freq_cost_power",
                     "freq_cost_scale"):
            if getattr(self, name) < 0:
                raise GreyglassError(f"SAEConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.architecture in ("topk", "batchtopk") and self.k > self.d_sae:
            raise GreyglassError(f"SAEConfig.k = {self.k} is larger than d_sae = {self.d_sae}; choose k <= d_sae")

    @property
    def uses_topk(self) -> bool:
        return self.architecture in ("topk", "batchtopk")

    def with_updates(self, **changes) -> "SAEConfig":
        return replace(self, **changes)


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
