"""`SparseAutoencoder`: what every SAE architecture shares, with SAELens weight names.

    latents = act((x * s - b_dec) @ W_enc + b_enc)       # [N, d_sae]
    x_hat   = (latents @ W_dec + b_dec) / s              # [N, d_in]

`s = cfg.norm_scale` brings the inputs to a mean norm of sqrt(d_in), so hyper-parameters
carry over between models; saving folds it into the weights (see `folded`). This base holds
the weights, the normalisation, decoding, the frequency-aware cost's firing rates
(`frequency`), the training loss (squared error plus the architecture's sparsity term) and
folding. Each architecture (`architectures`: relu, topk, batchtopk, matryoshka, jumprelu) is a small
subclass giving its activation for inference (`_encode_rows`) and for training
(`_training_code`) and its sparsity term (`_sparsity_loss`), and Matryoshka its nested
reconstructions (`_training_reconstructions`); `create_sae(cfg)` builds the one `cfg.arch` names.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import replace
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from ..errors import GreyglassError
from .config import SAEConfig
from .frequency import cost_weights, update_rates
from .kernels import sparse_decode


class SAEOutput(NamedTuple):
    """What `SparseAutoencoder.forward` returns; losses are in the normalised space."""

    reconstruction: Tensor  # [N, d_in], in the input's units
    values: Tensor | None  # [N, k] active latent values (topk, batchtopk in training)
    indices: Tensor | None  # [N, k] their latent indices
    latents: Tensor | None  # [N, d_sae] dense latents (relu, jumprelu, batchtopk at inference)
    loss: Tensor  # scalar: mse + aux
    mse: Tensor  # scalar: squared error summed over d_in, mean over tokens
    aux: Tensor  # scalar: AuxK loss (plus Matryoshka's inner prefix errors), or the L1 / L0 penalty
    l0: Tensor  # scalar: mean active latents per token
    counts: Tensor  # [d_sae] long: tokens of the batch each latent was active on


class TopKLatents(NamedTuple):
    values: Tensor  # [N, k]
    indices: Tensor  # [N, k]


class Code(NamedTuple):
    """One training batch's latents: sparse (`top`) or dense (`latents`), with the pre-activations they came from."""

    pre: Tensor  # [N, d_sae]
    top: TopKLatents | None = None
    latents: Tensor | None = None


class SparseAutoencoder(nn.Module, ABC):
    """An untied sparse autoencoder over one site's activations (build one with `create_sae`)."""

    architecture: ClassVar[str]
    """The `cfg.arch.name` this class implements."""
    initial_decoder_norm: ClassVar[float] = 1.0
    """Norm of the decoder rows at initialisation."""

    def __init__(self, cfg: SAEConfig, seed: int = 0):
        super().__init__()
        if cfg.architecture != self.architecture:
            raise GreyglassError(f"{type(self).__name__} implements architecture {self.architecture}, but the config "
                                 f"says {cfg.architecture}; build SAEs with create_sae(cfg)")
        self.cfg = cfg
        gen = torch.Generator().manual_seed(seed)
        W_dec = torch.randn(cfg.d_sae, cfg.d_in, generator=gen)  # [d_sae, d_in]
        W_dec /= W_dec.norm(dim=1, keepdim=True)
        W_dec *= self.initial_decoder_norm
        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = nn.Parameter(W_dec.T.clone())  # [d_in, d_sae]: the decoder's transpose
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in))
        if cfg.freq_cost.on:
            # moving average of each latent's firing rate; starts as if all fired equally often
            self.register_buffer("fire_rate", torch.full((cfg.d_sae,), min(self.expected_l0() / cfg.d_sae, 1.0)))

    # ---- what each architecture gives ------------------------------------------------------

    @abstractmethod
    def _encode_rows(self, x: Tensor) -> Tensor:
        """Dense latents `[N, d_sae]` of raw activations `[N, d_in]`, inference semantics."""

    @abstractmethod
    def _training_code(self, xn: Tensor, weights: Tensor | None) -> Code:
        """The latents of normalised activations `xn [N, d_in]` in `forward` (`weights`: the cost weights or None)."""

    @abstractmethod
    def _sparsity_loss(self, xn: Tensor, recon_n: Tensor, code: Code, dead: Tensor | None, sparsity_scale: float,
                       weights: Tensor | None) -> Tensor:
        """The term added to the squared error: a sparsity penalty, or AuxK."""

    def _training_reconstructions(self, code: Code) -> Tensor:
        """The normalised reconstructions `[levels, N, d_in]` whose squared errors the loss sums, the
        full dictionary's last: one level, except Matryoshka's nested prefixes."""
        decoded = sparse_decode(*code.top, self.W_dec) if code.top is not None else code.latents @ self.W_dec
        return (decoded + self.b_dec)[None]

    def expected_l0(self) -> float:
        """Active latents per token expected before training (where the firing-rate average starts)."""
        raise GreyglassError(f"architecture {self.architecture} has no frequency-aware cost")

    def sparsity_scale(self, tokens: int) -> float:
        """Multiplier of the sparsity penalty after `tokens` training tokens (a warm-up)."""
        return 1.0

    # ---- normalisation --------------------------------------------------------------------

    @property
    def scale(self) -> float:
        return 1.0 if self.cfg.norm_scale is None else float(self.cfg.norm_scale)

    @torch.no_grad()
    def initialise_from(self, x: Tensor) -> None:
        """Fix `norm_scale` (if unset) and `b_dec` from a first batch `[N, d_in]`, then what the architecture starts from it."""
        x = x.float()
        if self.cfg.norm_scale is None:
            self.cfg = self.cfg.with_updates(norm_scale=math.sqrt(self.cfg.d_in) / x.norm(dim=-1).mean().item())
        xn = x * self.scale
        if self.cfg.b_dec_init == "mean":
            self.b_dec.copy_(xn.mean(0))
        elif self.cfg.b_dec_init == "geometric_median":
            self.b_dec.copy_(geometric_median(xn))
        self._initialise_sparsity(x)

    def _initialise_sparsity(self, x: Tensor) -> None:
        """Architecture-specific start from the first batch (JumpReLU's thresholds); nothing by default."""

    # ---- encoding and decoding --------------------------------------------------------------

    def _pre(self, xn: Tensor) -> Tensor:
        """`(xn - b_dec) @ W_enc + b_enc` for normalised activations `[N, d_in]` -> `[N, d_sae]`."""
        return (xn - self.b_dec) @ self.W_enc + self.b_enc

    def pre_activations(self, x: Tensor) -> Tensor:
        """`(x * s - b_dec) @ W_enc + b_enc`: `[N, d_in]` -> `[N, d_sae]`."""
        return self._pre(x.float() * self.scale)

    def encode(self, x: Tensor) -> Tensor:
        """Dense latents `[..., d_sae]` for activations `[..., d_in]` (inference semantics)."""
        shape = x.shape[:-1]
        return self._encode_rows(x.reshape(-1, self.cfg.d_in)).reshape(*shape, self.cfg.d_sae)

    def decode(self, latents: Tensor) -> Tensor:
        """Dense latents `[..., d_sae]` -> reconstruction `[..., d_in]` in the input's units."""
        return (latents @ self.W_dec + self.b_dec) / self.scale

    def decode_topk(self, values: Tensor, indices: Tensor) -> Tensor:
        """Sparse latents (`[N, k]` values and indices) -> reconstruction `[N, d_in]`."""
        return (sparse_decode(values, indices, self.W_dec) + self.b_dec) / self.scale

    def reconstruct(self, x: Tensor) -> Tensor:
        """x -> x_hat, any leading shape, inference semantics (what gets spliced into the model)."""
        shape = x.shape
        out = self._reconstruct_rows(x.reshape(-1, self.cfg.d_in))
        return out.reshape(shape).to(x.dtype)

    def _reconstruct_rows(self, x: Tensor) -> Tensor:
        return self.decode(self._encode_rows(x))

    # ---- training forward -------------------------------------------------------------------

    def forward(self, x: Tensor, dead: Tensor | None = None, sparsity_scale: float = 1.0) -> SAEOutput:
        """Encode, decode and compute the losses for activations `x [N, d_in]`.

        `dead [d_sae]` marks latents for the AuxK loss; `sparsity_scale` multiplies the L1
        penalty (the warm-up).
        """
        x = x.float()
        xn = x * self.scale  # [N, d_in]
        weights = self.cost_weights()  # [d_sae] or None; in eval mode too, so the encoder is the trained one
        code = self._training_code(xn, weights)
        if code.top is not None:
            values, indices = code.top
            counts = torch.bincount(indices[values > 0], minlength=self.cfg.d_sae)
        else:
            counts = (code.latents > 0).sum(0)
        recons = self._training_reconstructions(code)  # [levels, N, d_in]
        errors = (recons - xn).pow(2).sum(-1).mean(-1)  # [levels]
        recon_n, mse = recons[-1], errors[-1]
        # the inner prefixes' errors (Matryoshka's; none elsewhere) join the sparsity term
        aux = self._sparsity_loss(xn, recon_n, code, dead, sparsity_scale, weights) + errors[:-1].sum()
        if weights is not None and self.training:
            update_rates(self.fire_rate, counts, len(x), self.cfg.freq_cost.decay)
        values, indices = code.top if code.top is not None else (None, None)
        return SAEOutput(recon_n / self.scale, values, indices, code.latents, mse + aux, mse, aux,
                         counts.sum().float() / len(x), counts)

    def cost_weights(self) -> Tensor | None:
        """The frequency-aware cost weight of each latent `[d_sae]` (None without a frequency-aware cost)."""
        f = self.cfg.freq_cost
        if not f.on:
            return None
        return cost_weights(self.fire_rate, self.cfg.d_in, f.form, f.power, f.floor, f.ceiling)

    # ---- constraints and saving -------------------------------------------------------------

    @torch.no_grad()
    def after_step(self) -> None:
        """Keep the constraints after an optimiser step: decoder rows at unit norm."""
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp(min=1e-8)

    @torch.no_grad()
    def folded(self) -> SparseAutoencoder:
        """The same function of raw activations with `norm_scale` folded into the weights.

        encode(x) = act((x - b_dec/s) @ (s W_enc) + b_enc) and x_hat = latents @ (W_dec/s) + b_dec/s,
        so the latents are unchanged and a SAELens user needs no normalisation. BatchTopK
        becomes a JumpReLU (see `architectures.BatchTopKSAE`).
        """
        out = self._inference_twin(replace(self.cfg, norm_scale=1.0)).to(self.W_enc.device)
        tensors = self._folded_parameters()
        for name, p in out.named_parameters():
            p.copy_(tensors[name])
        if self.cfg.freq_cost.on:
            out.fire_rate.copy_(self.fire_rate)  # TopK's inference selection needs the cost
        return out.eval()

    def _inference_twin(self, cfg: SAEConfig) -> SparseAutoencoder:
        """An SAE of `cfg` computing what this one computes at inference (BatchTopK's is a JumpReLU)."""
        return type(self)(cfg)

    def _folded_parameters(self) -> dict[str, Tensor]:
        s = self.scale
        return {"W_enc": self.W_enc * s, "W_dec": self.W_dec / s, "b_enc": self.b_enc, "b_dec": self.b_dec / s}

    def check_site(self, d_model: int, where: str) -> None:
        """Raise a clear error when this SAE cannot read a site of width `d_model`."""
        if d_model != self.cfg.d_in:
            raise GreyglassError(f"the SAE reads d_in = {self.cfg.d_in} but {where} has d_model = {d_model}; "
                                 "use an SAE trained on this model and site")


@torch.no_grad()
def geometric_median(x: Tensor, iterations: int = 20) -> Tensor:
    """Weiszfeld's algorithm: the point minimising the summed distance to the rows of `x [N, d]`."""
    median = x.mean(0)
    for _ in range(iterations):
        weights = 1.0 / (x - median).norm(dim=-1).clamp(min=1e-6)  # [N]
        median = (weights[:, None] * x).sum(0) / weights.sum()
    return median
