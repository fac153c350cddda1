"""The SAE architectures, one small class each behind `SparseAutoencoder`, and `create_sae`.

- `ReLUSAE` (relu): relu(pre); the loss adds an L1 penalty weighted by each decoder row's norm.
- `TopKSAE` (topk): the k largest pre-activations of each token (then relu); AuxK loss for dead latents.
- `BatchTopKSAE` (batchtopk): in training, the k*N largest over the whole batch; at inference a
  single learned threshold (saved as a JumpReLU, as SAELens does).
- `MatryoshkaSAE` (matryoshka): BatchTopK whose nested prefixes (the first w_1 < w_2 < ... < d_sae
  latents) must each reconstruct on their own; the loss sums every prefix's squared error
  (Bussmann et al. 2025, as SAELens's matryoshka_batchtopk), so early latents keep general
  features (a parent that fires with each of its children) instead of leaving them to later,
  more specific latents that absorb them. Saved as a JumpReLU, as SAELens saves it.
- `JumpReLUSAE` (jumprelu): pre * (pre > threshold) with per-latent thresholds trained by a
  straight-through estimator and an L0 penalty (or a target L0).
TopK and BatchTopK never form the dense `[N, d_sae] @ W_dec` product in training (`kernels`).

With a frequency-aware cost (`frequency`), inference uses the selection rule training used:
TopK keeps the k largest `pre - cost`; BatchTopK's threshold is learned on `pre - cost`, so at
inference latent i fires when `pre_i >= threshold + cost_i` (a per-latent JumpReLU threshold);
JumpReLU's cost is in its penalty only, so its encoder is `pre > threshold` either way.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import JumpReLUConfig, SAEConfig
from .frequency import selection_scores
from .kernels import Bags, bag_decode, gather_dot, sparse_decode
from .model import Code, SparseAutoencoder, TopKLatents

_THRESHOLD_EMA = 0.99
_UNTARGETED_L0 = 32
"""JumpReLU without a target L0: the L0 its firing-rate average starts from (TopK's default k)."""
_CUT_SAMPLE_HITS = 2048
_CUT_MARGIN = 1.25
"""`batch_cut` samples so that about 2,048 sampled entries lie above the cut, and puts its bound
where 1.25 times that many (plus 64) do: such a count varies by about 2%, so the bound is almost
never above the cut (and when it is, the exact fallback runs)."""


def thresholded(pre: Tensor, threshold: Tensor) -> Tensor:
    """Inference JumpReLU / BatchTopK as SAELens computes it: `relu(pre) * (pre > threshold)`.

    The comparison is strict, as in SAELens (also for its BatchTopK, saved as a JumpReLU):
    an activation exactly at the threshold does not fire.
    """
    return F.relu(pre) * (pre > threshold)


class ReLUSAE(SparseAutoencoder):
    """relu: ReLU latents and an L1 penalty weighted by each decoder row's norm."""

    architecture = "relu"
    initial_decoder_norm = 0.1  # Anthropic (April 2024): small random decoder rows, no norm constraint

    def _encode_rows(self, x: Tensor) -> Tensor:
        return F.relu(self.pre_activations(x))

    def _training_code(self, xn: Tensor, weights: Tensor | None) -> Code:
        pre = self._pre(xn)
        return Code(pre, latents=F.relu(pre))

    def _sparsity_loss(self, xn, recon_n, code, dead, sparsity_scale, weights) -> Tensor:
        return self.cfg.arch.l1_coefficient * sparsity_scale * (code.latents * self.W_dec.norm(dim=1)).sum(-1).mean()

    def sparsity_scale(self, tokens: int) -> float:
        warmup = self.cfg.arch.l1_warmup_tokens
        return 1.0 if warmup == 0 else min(1.0, tokens / warmup)

    @torch.no_grad()
    def after_step(self) -> None:
        """No constraint: the L1 penalty weighs each latent by its decoder row's norm instead."""


class _TopKFamily(SparseAutoencoder):
    """What TopK and BatchTopK share: latents chosen by score (the pre-activation, less the frequency
    cost if any), their values recomputed sparsely with gradients, and AuxK for dead latents."""

    def expected_l0(self) -> float:
        return self.cfg.arch.k

    def _scores(self, xn: Tensor, weights: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """(centred inputs [N, d_in], pre-activations [N, d_sae], selection scores [N, d_sae]); the
        dense encoder product only chooses latents, so it carries no gradient."""
        centred = xn - self.b_dec
        with torch.no_grad():
            pre = torch.addmm(self.b_enc, centred, self.W_enc)
            scores = pre if weights is None else selection_scores(pre, weights, self.cfg.arch.freq_cost_scale)
        return centred, pre, scores

    def _training_code(self, xn: Tensor, weights: Tensor | None) -> Code:
        centred, pre, scores = self._scores(xn, weights)
        return Code(pre, top=self._select(centred, pre, scores))

    @abstractmethod
    def _select(self, centred: Tensor, pre: Tensor, scores: Tensor) -> TopKLatents:
        """The latents that fire in training, from the scores."""

    def _gathered(self, centred: Tensor, scores: Tensor, k: int) -> TopKLatents:
        """The k highest-scoring latents per token, their values recomputed sparsely with gradients."""
        indices = scores.topk(k, dim=-1, sorted=False).indices  # [N, k]
        values = gather_dot(centred, self.W_enc.t().contiguous(), indices) + self.b_enc[indices]
        return TopKLatents(F.relu(values), indices)

    def _sparsity_loss(self, xn, recon_n, code, dead, sparsity_scale, weights) -> Tensor:
        if not self.training or dead is None or not bool(dead.any()):
            return xn.new_zeros(())
        return self.cfg.arch.auxk_alpha * self._auxk(xn, recon_n, dead, code.pre)

    def _auxk(self, xn: Tensor, recon_n: Tensor, dead: Tensor, pre: Tensor) -> Tensor:
        """Gao et al.: the top k_aux dead latents reconstruct the residual error, normalised by its variance."""
        k_aux = min(self.cfg.arch.k_aux, int(dead.sum()))
        values, indices = self._gathered(xn - self.b_dec, pre.masked_fill(~dead, -torch.inf), k_aux)
        residual = (xn - recon_n).detach()
        err = (sparse_decode(values, indices, self.W_dec) - residual).pow(2).sum(-1).mean()
        return err / (residual - residual.mean(0)).pow(2).sum(-1).mean().clamp(min=1e-12)


class TopKSAE(_TopKFamily):
    """topk: the k highest-scoring latents of each token, in training and at inference."""

    architecture = "topk"

    def encode_topk(self, x: Tensor, k: int | None = None) -> TopKLatents:
        """The k active latents of each token: values and indices, `[N, k]` each."""
        centred, _, scores = self._scores(x.float() * self.scale, self.cost_weights())
        return self._gathered(centred, scores, k or self.cfg.arch.k)

    def _select(self, centred: Tensor, pre: Tensor, scores: Tensor) -> TopKLatents:
        return self._gathered(centred, scores, self.cfg.arch.k)

    def _encode_rows(self, x: Tensor) -> Tensor:
        top = self.encode_topk(x)
        return x.new_zeros(len(x), self.cfg.d_sae, dtype=top.values.dtype).scatter(1, top.indices, top.values)

    def _reconstruct_rows(self, x: Tensor) -> Tensor:
        return self.decode_topk(*self.encode_topk(x))


class BatchTopKSAE(_TopKFamily):
    """batchtopk: the k*N highest-scoring latents of a batch of N tokens in training; at inference
    the learned threshold (a running average of the smallest score kept)."""

    architecture = "batchtopk"

    def __init__(self, cfg: SAEConfig, seed: int = 0):
        super().__init__(cfg, seed)
        # -inf: not estimated yet (a learned one may be negative: it is on pre - cost)
        self.register_buffer("threshold", torch.tensor(-math.inf))

    def _training_code(self, xn: Tensor, weights: Tensor | None) -> Code:
        if self.training:
            return super()._training_code(xn, weights)
        pre = self._pre(xn)
        return Code(pre, latents=thresholded(pre, self.inference_threshold()))

    def _select(self, centred: Tensor, pre: Tensor, scores: Tensor) -> TopKLatents:
        """The k*N highest-scoring latents over the batch, packed per token into `[N, k_max]`.

        A latent whose pre-activation is <= 0 never fires. Each row holds its token's latents in
        increasing index order, then as padding (value 0) the first latents it does not use, so a
        row's latents are distinct. The threshold is learned on the scores, the rule that chose
        the latents (see `inference_threshold`).
        """
        n = len(pre)
        with torch.no_grad():
            # the scores with non-positive pre-activations at 0, [N, d_sae]; without a cost that is
            # relu(pre), whose cut is the relu of pre's cut, so pre itself is ranked (no copy); the
            # scores with a cost are this step's own tensor, so they are masked in place
            ranked = pre if scores is pre else scores.masked_fill_(pre <= 0, 0.0)
            cut = batch_cut(ranked, min(self.cfg.arch.k * n, ranked.numel()))
            cut = cut.clamp(min=0.0) if scores is pre else cut
            keep = ranked >= cut  # [N, d_sae]; above a positive cut every pre-activation is positive
            if cut <= 0:  # fewer than k*N positive scores: the rest tie at 0, and must not fire
                keep &= pre > 0
            rows, cols = keep.nonzero(as_tuple=True)  # [E] each, row-major
            self._update_threshold(ranked[rows, cols].min() if len(rows) else cut)
            slots, counts = _row_slots(rows, n)
            k_max = max(1, int(counts.max()))
            unused = ~keep[:, :k_max]  # among a row's first k_max latents, enough are unused to pad it
            pad_rows, pad_cols = (unused & (unused.cumsum(-1) <= (k_max - counts)[:, None])).nonzero(as_tuple=True)
            indices = torch.empty(n, k_max, dtype=cols.dtype, device=cols.device)
            indices[rows, slots] = cols
            indices[pad_rows, _row_slots(pad_rows, n)[0] + counts[pad_rows]] = pad_cols
            mask = torch.zeros(n, k_max, dtype=torch.bool, device=cols.device)
            mask[rows, slots] = True
        values = F.relu(gather_dot(centred, self.W_enc.t().contiguous(), indices) + self.b_enc[indices]) * mask
        return TopKLatents(values, indices)

    @torch.no_grad()
    def _update_threshold(self, batch_min: Tensor) -> None:
        if torch.isinf(self.threshold):
            self.threshold.copy_(batch_min)
        else:
            self.threshold.mul_(_THRESHOLD_EMA).add_((1 - _THRESHOLD_EMA) * batch_min)

    def inference_threshold(self) -> Tensor:
        """Per-latent threshold `[d_sae]` on the pre-activations used outside training.

        The one threshold is learned on the selection scores `pre - cost`; on the
        pre-activations that is `threshold + cost_i` per latent (one value without a cost).
        """
        weights = self.cost_weights()
        cost = 0.0 if weights is None else self.cfg.arch.freq_cost_scale * weights  # [d_sae] or 0
        # clamp: never a negative threshold, since training never keeps a pre-activation <= 0
        return (self.threshold + cost).clamp(min=0.0).expand(self.cfg.d_sae)

    def _encode_rows(self, x: Tensor) -> Tensor:
        return thresholded(self.pre_activations(x), self.inference_threshold())

    def _inference_twin(self, cfg: SAEConfig) -> SparseAutoencoder:
        """A JumpReLU with the learned threshold on every latent (plus each latent's cost, if any)."""
        return JumpReLUSAE(replace(cfg, arch=JumpReLUConfig()))

    def _folded_parameters(self) -> dict[str, Tensor]:
        return {**super()._folded_parameters(), "threshold": self.inference_threshold()}


def batch_cut(ranked: Tensor, n_keep: int) -> Tensor:
    """The `n_keep`-th largest entry of `ranked` (`ranked.flatten().topk(n_keep).values.min()`).

    Ranking all N * d_sae entries is most of a BatchTopK step, so only those at or above a lower
    bound are ranked: the bound is read off a fixed sample of the entries, a little below where
    the cut falls in it. When at least `n_keep` entries reach the bound the cut is among them and
    the answer is exact; otherwise (a badly placed bound) everything is ranked.
    """
    flat = ranked.flatten()
    sample_size = math.ceil(_CUT_SAMPLE_HITS * flat.numel() / n_keep)
    if sample_size < flat.numel():
        gen = torch.Generator(device=flat.device).manual_seed(0)
        sample = flat[torch.randint(flat.numel(), (sample_size,), generator=gen, device=flat.device)]
        rank = min(sample_size, math.ceil(_CUT_MARGIN * _CUT_SAMPLE_HITS) + 64)
        bound = sample.topk(rank, sorted=False).values.min()
        candidates = flat[flat >= bound]
        if len(candidates) >= n_keep:
            flat = candidates
    return flat.topk(n_keep, sorted=False).values.min()


def _row_slots(rows: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """For row ids `[E]` in non-decreasing order: each entry's position within its row `[E]`, and
    each of the n rows' entry count `[n]`."""
    counts = torch.bincount(rows, minlength=n)
    return torch.arange(len(rows), device=rows.device) - (counts.cumsum(0) - counts)[rows], counts


class MatryoshkaSAE(BatchTopKSAE):
    """matryoshka: BatchTopK latents chosen over the whole dictionary, as in SAELens and Bussmann et
    al.'s code; each inner prefix's reconstruction adds its squared error to the loss (the full
    dictionary's is the usual one), and AuxK trains dead latents on the full reconstruction's error
    (SAELens's default, `use_matryoshka_aux_loss=False`). The prefixes' reconstructions are running
    sums of the groups' contributions, all decoded at once (not one decode per prefix)."""

    architecture = "matryoshka"

    def _training_reconstructions(self, code: Code) -> Tensor:
        """Every prefix's reconstruction `[levels, N, d_in]`: the running sum of the groups' contributions."""
        widths = self.cfg.arch.prefix_widths(self.cfg.d_sae)
        if code.top is None:  # inference: dense latents
            groups = torch.stack([code.latents[:, a:b] @ self.W_dec[a:b] for a, b in zip((0, *widths), widths)])
        else:
            groups = self._group_decode(code.top, widths)
        return groups.cumsum(0) + self.b_dec

    def _group_decode(self, top: TopKLatents, widths: tuple[int, ...]) -> Tensor:
        """What each group of latents (`widths[i-1]:widths[i]`) contributes, `[levels, N, d_in]`, from one
        sparse decode: each (token, group) is a bag of the token's active latents in that group."""
        values, indices = top  # [N, k_max]
        n, levels = indices.shape[0], len(widths)
        group = torch.bucketize(indices, torch.tensor(widths[:-1], device=indices.device), right=True)  # [N, k_max]
        ids = (torch.arange(n, device=indices.device)[:, None] * levels + group).flatten()
        ids, order = ids.sort(stable=True)  # BatchTopK's rows come sorted, so this keeps their order
        decoded = bag_decode(values.flatten()[order], indices.flatten()[order], self.W_dec,
                             Bags.from_ids(ids, n * levels))  # [N * levels, d_in]
        return decoded.view(n, levels, -1).transpose(0, 1)


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


class JumpReLUSAE(SparseAutoencoder):
    """jumprelu: per-latent learned thresholds, an L0 penalty (or a target L0) through a straight-through estimator."""

    architecture = "jumprelu"

    def __init__(self, cfg: SAEConfig, seed: int = 0):
        super().__init__(cfg, seed)
        self.threshold = nn.Parameter(torch.full((cfg.d_sae,), cfg.arch.init_threshold))

    def expected_l0(self) -> float:
        return self.cfg.arch.target_l0 or _UNTARGETED_L0

    def _initialise_sparsity(self, x: Tensor) -> None:
        """With a target L0, start the thresholds where the first batch has that L0."""
        arch = self.cfg.arch
        if arch.target_l0 and arch.init_from_target:
            self.threshold.fill_(_level_for_l0(self.pre_activations(x), arch.target_l0))

    def inference_threshold(self) -> Tensor:
        return self.threshold

    def _encode_rows(self, x: Tensor) -> Tensor:
        return thresholded(self.pre_activations(x), self.threshold)

    def _training_code(self, xn: Tensor, weights: Tensor | None) -> Code:
        pre = self._pre(xn)
        return Code(pre, latents=_JumpReLU.apply(pre, self.threshold, self.cfg.arch.bandwidth))

    def _sparsity_loss(self, xn, recon_n, code, dead, sparsity_scale, weights) -> Tensor:
        arch = self.cfg.arch
        active = _Step.apply(code.pre, self.threshold, arch.bandwidth)  # [N, d_sae]
        if weights is not None and arch.target_l0 is not None:
            # the target is on the real L0: weights average 1 over firings, only relative costs change
            weights = weights * (self.fire_rate.sum() / (self.fire_rate * weights).sum().clamp(min=1e-12))
        l0 = (active if weights is None else active * weights).sum(-1).mean()  # weighted: frequency-aware
        if arch.target_l0 is not None:
            return arch.l0_coefficient * (l0 / arch.target_l0 - 1).pow(2)
        return arch.l0_coefficient * l0

    @torch.no_grad()
    def after_step(self) -> None:
        """Unit-norm decoder rows, and thresholds kept positive."""
        super().after_step()
        self.threshold.clamp_(min=1e-6)

    def _folded_parameters(self) -> dict[str, Tensor]:
        return {**super()._folded_parameters(), "threshold": self.threshold}


def _level_for_l0(pre: Tensor, l0: float) -> float:
    """The pre-activation level above which `pre [N, d_sae]` has l0 active latents per token on average."""
    n_keep = max(1, min(pre.numel(), round(l0 * len(pre))))
    return max(pre.flatten().topk(n_keep, sorted=False).values.min().item(), 1e-6)


SAE_CLASSES: dict[str, type[SparseAutoencoder]] = {c.architecture: c for c in (ReLUSAE, TopKSAE, BatchTopKSAE,
                                                                               MatryoshkaSAE, JumpReLUSAE)}


def create_sae(cfg: SAEConfig, seed: int = 0) -> SparseAutoencoder:
    """A new SAE of the architecture `cfg.arch` names, its weights drawn from `seed`."""
    return SAE_CLASSES[cfg.architecture](cfg, seed)
