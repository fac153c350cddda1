"""`SparseAutoencoder`: ReLU, TopK, BatchTopK and JumpReLU SAEs with SAELens weight names.

    latents = act((x * s - b_dec) @ W_enc + b_enc)       # [N, d_sae]
    x_hat   = (latents @ W_dec + b_dec) / s              # [N, d_in]

`s = cfg.norm_scale` brings the inputs to a mean norm of sqrt(d_in), so hyper-parameters
carry over between models; saving folds it into the weights (see `folded`). The activation:
- relu:      relu(pre); the loss adds an L1 penalty weighted by each decoder row's norm.
- topk:      the k largest pre-activations of each token (then relu); AuxK loss for dead latents.
- batchtopk: in training, the k*N largest over the whole batch; at inference a single learned
             threshold (saved as a JumpReLU, as SAELens does).
- jumprelu:  pre * (pre > threshold) with per-latent thresholds trained by a straight-through
             estimator and an L0 penalty (or a target L0).
TopK and BatchTopK never form the dense `[N, d_sae] @ W_dec` product in training (`kernels`).

With a frequency-aware cost (`frequency`), inference uses the selection rule training used:
TopK keeps the k largest `pre - cost`; BatchTopK's threshold is learned on `pre - cost`, so at
inference latent i fires when `pre_i >= threshold + cost_i` (a per-latent JumpReLU threshold);
JumpReLU's cost is in its penalty only, so its encoder is `pre > threshold` either way.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import SAEConfig
from .frequency import cost_weights, selection_scores, update_rates
from .kernels import gather_dot, sparse_decode

_THRESHOLD_EMA = 0.99


class SAEOutput(NamedTuple):
    """What `SparseAutoencoder.forward` returns; losses are in the normalised space."""

    reconstruction: Tensor  # [N, d_in], in the input's units
    values: Tensor | None  # [N, k] active latent values (topk, batchtopk in training)
    indices: Tensor | None  # [N, k] their latent indices
    latents: Tensor | None  # [N, d_sae] dense latents (relu, jumprelu, batchtopk at inference)
    loss: Tensor  # scalar: mse + aux
    mse: Tensor  # scalar: squared error summed over d_in, mean over tokens
    aux: Tensor  # scalar: AuxK loss, or the L1 / L0 penalty
    l0: Tensor  # scalar: mean active latents per token
    fired: Tensor  # [d_sae] bool: latents active on at least one token of the batch


class TopKLatents(NamedTuple):
    values: Tensor  # [N, k]
    indices: Tensor  # [N, k]


def _rectangle(u: Tensor) -> Tensor:
    return (u.abs() < 0.5).to(u.dtype)


class _JumpReLU(torch.autograd.Function):
    """pre * (pre > threshold); the threshold gets a straight-through (rectangle kernel) gradient."""

    @staticmethod
    def forward(ctx, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return pre * (pre > threshold)

    @staticmethod
    def backward(ctx, grad: Tensor):
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        g_pre = grad * (pre > threshold)
        g_thr = (-(threshold / eps) * _rectangle((pre - threshold) / eps) * grad).sum(0)
        return g_pre, g_thr, None


class _Step(torch.autograd.Function):
    """1[pre > threshold]; gradient only to the threshold, through the rectangle kernel."""

    @staticmethod
    def forward(ctx, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        g_thr = (-(1.0 / eps) * _rectangle((pre - threshold) / eps) * grad).sum(0)
        return None, g_thr, None


class SparseAutoencoder(nn.Module):
    """An untied sparse autoencoder over one site's activations."""

    def __init__(self, cfg: SAEConfig, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        gen = torch.Generator().manual_seed(seed)
        W_dec = torch.randn(cfg.d_sae, cfg.d_in, generator=gen)  # [d_sae, d_in]
        W_dec /= W_dec.norm(dim=1, keepdim=True)
        if cfg.architecture == "relu":
            W_dec *= 0.1  # Anthropic (April 2024): small random decoder rows, no norm constraint
        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = nn.Parameter(W_dec.T.clone())  # [d_in, d_sae]: the decoder's transpose
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in))
        if cfg.architecture == "jumprelu":
            self.threshold = nn.Parameter(torch.full((cfg.d_sae,), cfg.jumprelu_init_threshold))
        if cfg.architecture == "batchtopk":
            # -inf: not estimated yet (a learned one may be negative: it is on pre - cost)
            self.register_buffer("threshold", torch.tensor(-math.inf))
        if cfg.freq_cost != "none":
            # moving average of each latent's firing rate; starts as if all fired equally often
            start = (cfg.target_l0 or cfg.k) / cfg.d_sae
            self.register_buffer("fire_rate", torch.full((cfg.d_sae,), min(start, 1.0)))

    # ---- normalisation --------------------------------------------------------------------

    @property
    def scale(self) -> float:
        return 1.0 if self.cfg.norm_scale is None else float(self.cfg.norm_scale)

    @torch.no_grad()
    def initialise_from(self, x: Tensor) -> None:
        """Fix `norm_scale` (if unset), `b_dec` and (jumprelu with a target L0) the thresholds from a first batch `[N, d_in]`."""
        x = x.float()
        if self.cfg.norm_scale is None:
            self.cfg = self.cfg.with_updates(norm_scale=math.sqrt(self.cfg.d_in) / x.norm(dim=-1).mean().item())
        xn = x * self.scale
        if self.cfg.b_dec_init == "mean":
            self.b_dec.copy_(xn.mean(0))
        elif self.cfg.b_dec_init == "geometric_median":
            self.b_dec.copy_(geometric_median(xn))
        if self.cfg.architecture == "jumprelu" and self.cfg.target_l0 and self.cfg.jumprelu_init_from_target:
            self.threshold.fill_(self._level_for_l0(self.pre_activations(x), self.cfg.target_l0))

    @staticmethod
    def _level_for_l0(pre: Tensor, l0: float) -> float:
        """The pre-activation level above which `pre [N, d_sae]` has l0 active latents per token on average."""
        n_keep = max(1, min(pre.numel(), round(l0 * len(pre))))
        return max(pre.flatten().topk(n_keep, sorted=False).values.min().item(), 1e-6)

    # ---- encoding ---------------------------------------------------------------------------

    def pre_activations(self, x: Tensor) -> Tensor:
        """`(x * s - b_dec) @ W_enc + b_enc`: `[N, d_in]` -> `[N, d_sae]`."""
        return (x.float() * self.scale - self.b_dec) @ self.W_enc + self.b_enc

    def encode_topk(self, x: Tensor, k: int | None = None) -> TopKLatents:
        """The k active latents of each token (topk only): values and indices, `[N, k]` each."""
        centred = x.float() * self.scale - self.b_dec  # [N, d_in]
        with torch.no_grad():
            pre = torch.addmm(self.b_enc, centred, self.W_enc)  # [N, d_sae]
            scores = self._selection_scores(pre, self.cost_weights())
        return self._gathered(centred, scores, k or self.cfg.k)

    def _selection_scores(self, pre: Tensor, weights: Tensor | None) -> Tensor:
        """What TopK and BatchTopK rank latents by: `pre`, less the frequency cost when there is one."""
        return pre if weights is None else selection_scores(pre, weights, self.cfg.freq_cost_scale)

    def _gathered(self, centred: Tensor, scores: Tensor, k: int) -> TopKLatents:
        """The k highest-scoring latents per token, their values recomputed sparsely with gradients."""
        indices = scores.topk(k, dim=-1, sorted=False).indices  # [N, k]
        values = gather_dot(centred, self.W_enc.t().contiguous(), indices) + self.b_enc[indices]
        return TopKLatents(F.relu(values), indices)

    def encode(self, x: Tensor) -> Tensor:
        """Dense latents `[..., d_sae]` for activations `[..., d_in]` (inference semantics)."""
        shape = x.shape[:-1]
        x = x.reshape(-1, self.cfg.d_in)
        arch = self.cfg.architecture
        if arch == "topk":
            top = self.encode_topk(x)
            latents = x.new_zeros(len(x), self.cfg.d_sae, dtype=top.values.dtype).scatter(1, top.indices, top.values)
        else:
            pre = self.pre_activations(x)
            if arch == "relu":
                latents = F.relu(pre)
            else:
                latents = self._thresholded(pre)
        return latents.reshape(*shape, self.cfg.d_sae)

    def _thresholded(self, pre: Tensor) -> Tensor:
        """Inference JumpReLU / BatchTopK as SAELens computes it: `relu(pre) * (pre > threshold)`.

        The comparison is strict, as in SAELens (also for its BatchTopK, saved as a JumpReLU):
        an activation exactly at the threshold does not fire.
        """
        return F.relu(pre) * (pre > self.inference_threshold())

    def inference_threshold(self) -> Tensor:
        """Per-latent threshold on the pre-activations used outside training.

        BatchTopK learns one threshold on the selection scores `pre - cost`; on the
        pre-activations that is `threshold + cost_i` per latent (one value without a cost).
        """
        if self.cfg.architecture != "batchtopk":
            return self.threshold
        weights = self.cost_weights()
        cost = 0.0 if weights is None else self.cfg.freq_cost_scale * weights  # [d_sae] or 0
        # clamp: never a negative threshold, since training never keeps a pre-activation <= 0
        return (self.threshold + cost).clamp(min=0.0).expand(self.cfg.d_sae)

    # ---- decoding ---------------------------------------------------------------------------

    def decode(self, latents: Tensor) -> Tensor:
        """Dense latents `[..., d_sae]` -> reconstruction `[..., d_in]` in the input's units."""
        return (latents @ self.W_dec + self.b_dec) / self.scale

    def decode_topk(self, values: Tensor, indices: Tensor) -> Tensor:
        """Sparse latents (`[N, k]` values and indices) -> reconstruction `[N, d_in]`."""
        return (sparse_decode(values, indices, self.W_dec) + self.b_dec) / self.scale

    def reconstruct(self, x: Tensor) -> Tensor:
        """x -> x_hat, any leading shape, inference semantics (what gets spliced into the model)."""
        shape = x.shape
        x = x.reshape(-1, self.cfg.d_in)
        if self.cfg.architecture == "topk":
            out = self.decode_topk(*self.encode_topk(x))
        else:
            out = self.decode(self.encode(x))
        return out.reshape(shape).to(x.dtype)

    # ---- training forward -------------------------------------------------------------------

    def forward(self, x: Tensor, dead: Tensor | None = None, sparsity_scale: float = 1.0) -> SAEOutput:
        """Encode, decode and compute the losses for activations `x [N, d_in]`.

        `dead [d_sae]` marks latents for the AuxK loss; `sparsity_scale` multiplies the L1
        penalty (the warm-up).
        """
        x = x.float()
        xn = x * self.scale  # [N, d_in]
        arch = self.cfg.architecture
        values = indices = latents = pre = None
        weights = self.cost_weights()  # [d_sae] or None; in eval mode too, so the encoder is the trained one
        if arch == "topk" or (arch == "batchtopk" and self.training):
            centred = xn - self.b_dec  # [N, d_in]
            with torch.no_grad():
                pre = torch.addmm(self.b_enc, centred, self.W_enc)  # [N, d_sae]: only chooses latents
                scores = self._selection_scores(pre, weights)
            top = self._gathered(centred, scores, self.cfg.k) if arch == "topk" else self._batch_topk(centred, pre, scores)
            values, indices = top
            recon_n = sparse_decode(values, indices, self.W_dec) + self.b_dec
            active = values > 0  # [N, k]
            fired = torch.zeros(self.cfg.d_sae, dtype=torch.bool, device=x.device)
            fired[indices[active]] = True
            l0 = active.sum(-1).float().mean()
        else:
            pre = self.pre_activations(x)
            if arch == "jumprelu":
                latents = _JumpReLU.apply(pre, self.threshold, self.cfg.jumprelu_bandwidth)
            elif arch == "relu":
                latents = F.relu(pre)
            else:
                latents = self._thresholded(pre)
            recon_n = latents @ self.W_dec + self.b_dec
            fired = (latents > 0).any(0)
            l0 = (latents > 0).sum(-1).float().mean()
        mse = (recon_n - xn).pow(2).sum(-1).mean()
        aux = self._aux_loss(xn, recon_n, pre, latents, dead, sparsity_scale, weights)
        if weights is not None and self.training:
            counts = torch.bincount(indices[values > 0], minlength=self.cfg.d_sae) if latents is None else (latents > 0).sum(0)
            update_rates(self.fire_rate, counts, len(x), self.cfg.freq_cost_decay)
        return SAEOutput(recon_n / self.scale, values, indices, latents, mse + aux, mse, aux, l0, fired)

    def _batch_topk(self, centred: Tensor, pre: Tensor, scores: Tensor) -> TopKLatents:
        """The k*N highest-scoring latents over the batch, padded per token to `[N, k_max]`.

        `scores` rank the latents (the pre-activations, less the frequency cost if any); a latent
        whose pre-activation is <= 0 never fires. The threshold is learned on the scores, the
        rule that chose the latents (see `inference_threshold`).
        """
        with torch.no_grad():
            ranked = torch.where(pre > 0, scores, 0.0)  # [N, d_sae]
            n_keep = min(self.cfg.k * len(ranked), ranked.numel())
            cut = ranked.flatten().topk(n_keep, sorted=False).values.min()  # the batch threshold
            k_max = max(1, int((ranked >= cut).sum(-1).max()))
            indices = ranked.topk(k_max, dim=-1, sorted=False).indices
            kept_scores = ranked.gather(1, indices)  # [N, k_max]
            mask = (kept_scores >= cut) & (pre.gather(1, indices) > 0)
            self._update_threshold(kept_scores[mask].min() if mask.any() else cut)
        values = F.relu(gather_dot(centred, self.W_enc.t().contiguous(), indices) + self.b_enc[indices]) * mask
        return TopKLatents(values, indices)

    @torch.no_grad()
    def _update_threshold(self, batch_min: Tensor) -> None:
        if torch.isinf(self.threshold):
            self.threshold.copy_(batch_min)
        else:
            self.threshold.mul_(_THRESHOLD_EMA).add_((1 - _THRESHOLD_EMA) * batch_min)

    def cost_weights(self) -> Tensor | None:
        """The frequency-aware cost weight of each latent `[d_sae]` (None without freq_cost)."""
        cfg = self.cfg
        if cfg.freq_cost == "none":
            return None
        return cost_weights(self.fire_rate, cfg.d_in, cfg.freq_cost, cfg.freq_cost_power, cfg.freq_cost_floor,
                            cfg.freq_cost_ceiling)

    def _aux_loss(self, xn, recon_n, pre, latents, dead, sparsity_scale, weights=None) -> Tensor:
        cfg = self.cfg
        if cfg.architecture == "relu":
            return cfg.l1_coefficient * sparsity_scale * (latents * self.W_dec.norm(dim=1)).sum(-1).mean()
        if cfg.architecture == "jumprelu":
            active = _Step.apply(pre, self.threshold, cfg.jumprelu_bandwidth)  # [N, d_sae]
            if weights is not None and cfg.target_l0 is not None:
                # the target is on the real L0: weights average 1 over firings, only relative costs change
                weights = weights * (self.fire_rate.sum() / (self.fire_rate * weights).sum().clamp(min=1e-12))
            l0 = (active if weights is None else active * weights).sum(-1).mean()  # weighted: frequency-aware
            if cfg.target_l0 is not None:
                return cfg.l0_coefficient * (l0 / cfg.target_l0 - 1).pow(2)
            return cfg.l0_coefficient * l0
        if not self.training or dead is None or not bool(dead.any()):
            return xn.new_zeros(())
        return cfg.auxk_alpha * self._auxk(xn, recon_n, dead, pre)

    def _auxk(self, xn: Tensor, recon_n: Tensor, dead: Tensor, pre: Tensor) -> Tensor:
        """Gao et al.: the top k_aux dead latents reconstruct the residual error, normalised by its variance."""
        k_aux = min(self.cfg.k_aux, int(dead.sum()))
        values, indices = self._gathered(xn - self.b_dec, pre.masked_fill(~dead, -torch.inf), k_aux)
        residual = (xn - recon_n).detach()
        err = (sparse_decode(values, indices, self.W_dec) - residual).pow(2).sum(-1).mean()
        return err / (residual - residual.mean(0)).pow(2).sum(-1).mean().clamp(min=1e-12)

    # ---- constraints and saving -------------------------------------------------------------

    @torch.no_grad()
    def after_step(self) -> None:
        """Keep decoder rows at unit norm (all but relu) and thresholds positive (jumprelu)."""
        if self.cfg.architecture != "relu":
            self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp(min=1e-8)
        if self.cfg.architecture == "jumprelu":
            self.threshold.clamp_(min=1e-6)

    @torch.no_grad()
    def folded(self) -> "SparseAutoencoder":
        """The same function of raw activations with `norm_scale` folded into the weights.

        encode(x) = act((x - b_dec/s) @ (s W_enc) + b_enc) and x_hat = latents @ (W_dec/s) + b_dec/s,
        so the latents are unchanged and a SAELens user needs no normalisation. BatchTopK
        becomes a JumpReLU with its learned threshold on every latent (plus the latent's cost when
        trained with a frequency-aware cost: see `inference_threshold`).
        """
        s = self.scale
        arch = "jumprelu" if self.cfg.architecture == "batchtopk" else self.cfg.architecture
        out = SparseAutoencoder(self.cfg.with_updates(norm_scale=1.0, architecture=arch)).to(self.W_enc.device)
        out.W_enc.copy_(self.W_enc * s)
        out.W_dec.copy_(self.W_dec / s)
        out.b_enc.copy_(self.b_enc)
        out.b_dec.copy_(self.b_dec / s)
        if arch == "jumprelu":
            out.threshold.copy_(self.inference_threshold())
        if self.cfg.freq_cost != "none":
            out.fire_rate.copy_(self.fire_rate)  # TopK's inference selection needs the cost
        return out.eval()

    def save(self, folder, sparsity: Tensor | None = None, training: dict | None = None):
        """Write a folder greyglass and SAELens both load (see `greyglass.sae.io`)."""
        from .io import save_sae

        return save_sae(self, folder, sparsity=sparsity, training=training)

    @classmethod
    def load(cls, folder) -> "SparseAutoencoder":
        """Load a greyglass or SAELens SAE folder (see `greyglass.sae.io`)."""
        from .io import load_sae

        return load_sae(folder)

    def check_site(self, d_model: int, where: str) -> None:
        """Raise a clear error when this SAE cannot read a site of width `d_model`."""
        from ..errors import GreyglassError

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
