"""The BatchTopK crosscoder: one dictionary of latents read from two models' activations at one site.

Lindsey et al. (2024) and Minder et al. (2025): every latent has one encoder reading both models and one decoder
row per model,

    f       = relu(sum_m (x_m * s_m - b_dec_m) @ W_enc[m] + b_enc)          # [N, d_sae]
    x_hat_m = (f @ W_dec[:, m] + b_dec_m) / s_m                             # [N, d_in] for m in A, B

with `s_m` scaling model m's activations to a mean norm of sqrt(d_in) (its own, so neither model dominates). The
decoder rows are free: a latent that only model B needs learns a small A row, and the relative decoder norm
tells shared latents from model-specific ones. Training keeps the k*N largest `f_i * (|W_dec[i, A]| + |W_dec[i, B]|)`
of a batch of N tokens (BatchTopK with the references' decoder-norm weighting); the loss is, as in Minder et
al.'s trainer, the norm of the reconstruction error averaged over tokens and both models, plus AuxK for dead
latents. At inference a latent fires where that score exceeds a
threshold learned as a running average of the smallest score kept in training.

The folder (`save_crosscoder`, `load_crosscoder`): `crosscoder.safetensors` with `W_enc [2, d_in, d_sae]`,
`W_dec [d_sae, 2, d_in]`, `b_enc [d_sae]`, `b_dec [2, d_in]` and `threshold []` in the normalised space (index 0
is model A, 1 model B), `cfg.json` (the `CrosscoderConfig`, with `norm_scale_a`/`norm_scale_b`) and
`training.json` (training settings, final metrics, provenance). See docs/diff.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ..atomic import atomic_dir
from ..json_files import read_json_object
from ..records import from_json
from ..errors import GreyglassError
from ..sae.kernels import gather_dot, sparse_decode
from ..sae.model import geometric_median
from .config import B_ONLY_FROM, SHARED_WITHIN, CrosscoderConfig

CFG = "cfg.json"
WEIGHTS = "crosscoder.safetensors"
TRAINING = "training.json"
_THRESHOLD_EMA = 0.99
_INITIAL_DECODER_NORM = 0.1


class CrosscoderOutput(NamedTuple):
    """A training forward: losses in the normalised space, and what the training loop counts."""

    loss: Tensor  # scalar: mean over tokens and both models of |x_m - x_hat_m|, plus AuxK
    mse: Tensor  # scalar: squared error summed over both models and d_in, mean over tokens (no gradient)
    mse_per_model: Tensor  # [2]
    aux: Tensor  # scalar
    l0: Tensor  # scalar: mean active latents per token
    counts: Tensor  # [d_sae] long: tokens of the batch each latent fired on


class Crosscoder(nn.Module):
    """A BatchTopK crosscoder over two models (build it from a `CrosscoderConfig`; load it with `load_crosscoder`)."""

    def __init__(self, cfg: CrosscoderConfig, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        gen = torch.Generator().manual_seed(seed)
        # [d_sae, 2, d_in]: one random row per latent for both models, so a latent starts shared and only a difference
        # between the models' activations makes its rows differ (identical models keep identical rows)
        W_dec = torch.randn(cfg.d_sae, 1, cfg.d_in, generator=gen).expand(-1, 2, -1).clone()
        # Small rows (as Anthropic's crosscoders and ckkissane's replication start): the norms the training gives
        # each model then decide a latent's relative norm, not the initialisation (both start at 0.5).
        W_dec *= _INITIAL_DECODER_NORM / W_dec.norm(dim=-1, keepdim=True)
        self.W_dec = nn.Parameter(W_dec)
        # [2, d_in, d_sae]: the decoder's transpose, at unit norm so the first pre-activations are of order one
        self.W_enc = nn.Parameter(W_dec.permute(1, 2, 0).contiguous() / _INITIAL_DECODER_NORM)
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae))
        self.b_dec = nn.Parameter(torch.zeros(2, cfg.d_in))
        self.register_buffer("threshold", torch.tensor(-math.inf))  # -inf: not estimated yet

    # ---- shapes and normalisation ---------------------------------------------------------

    @property
    def scales(self) -> Tensor:
        """`[2]`: each model's input scale (1 until estimated)."""
        return torch.tensor([self.cfg.norm_scale_a or 1.0, self.cfg.norm_scale_b or 1.0], device=self.W_dec.device)

    def _normalised(self, x: Tensor) -> Tensor:
        """Raw activations `[N, 2, d_in]` -> normalised and concatenated `[N, 2 * d_in]`."""
        return (x.float() * self.scales[:, None]).reshape(len(x), -1)

    def decoder_norms(self) -> Tensor:
        """`[d_sae, 2]`: each latent's decoder norm in model A and model B (normalised space)."""
        return self.W_dec.detach().norm(dim=-1)

    @torch.no_grad()
    def initialise_from(self, x: Tensor) -> None:
        """Fix the scales (if unset) and b_dec from a first batch `[N, 2, d_in]`."""
        norms = x.float().norm(dim=-1).mean(0)  # [2]
        if self.cfg.norm_scale_a is None or self.cfg.norm_scale_b is None:
            root = math.sqrt(self.cfg.d_in)
            self.cfg = replace(self.cfg, norm_scale_a=root / norms[0].item(), norm_scale_b=root / norms[1].item())
        xn = self._normalised(x).view(len(x), 2, -1)
        self.b_dec.copy_(torch.stack([geometric_median(xn[:, m]) for m in range(2)]))

    # ---- encoding ---------------------------------------------------------------------------

    def _centred(self, xn: Tensor) -> Tensor:
        return xn - self.b_dec.reshape(-1)

    def _scores(self, centred: Tensor) -> tuple[Tensor, Tensor]:
        """(pre-activations [N, d_sae], selection scores relu(pre) * summed decoder norm [N, d_sae]), no gradient."""
        with torch.no_grad():
            pre = torch.addmm(self.b_enc, centred, self.W_enc.reshape(-1, self.cfg.d_sae))
            return pre, F.relu(pre) * self.decoder_norms().sum(-1)

    def encode(self, x: Tensor) -> Tensor:
        """Dense latents `[N, d_sae]` of raw activations `x [N, 2, d_in]` at inference (the learned threshold)."""
        pre, scores = self._scores(self._centred(self._normalised(x)))
        return F.relu(pre) * (scores > self.threshold.clamp(min=0.0))

    def decode(self, f: Tensor) -> Tensor:
        """Dense latents `[N, d_sae]` -> both models' reconstructions `[N, 2, d_in]` in raw units."""
        recon_n = torch.einsum("nf,fmd->nmd", f, self.W_dec) + self.b_dec
        return recon_n / self.scales[:, None]

    def _batch_top(self, pre: Tensor, scores: Tensor) -> tuple[Tensor, Tensor]:
        """The k*N highest scores of the batch as per-token (indices, kept mask) `[N, k_max]`; updates the threshold."""
        with torch.no_grad():
            n_keep = min(self.cfg.k * len(scores), scores.numel())
            cut = scores.flatten().topk(n_keep, sorted=False).values.min()
            k_max = max(1, int((scores >= cut).sum(-1).max()))
            top = scores.topk(k_max, dim=-1, sorted=False)
            kept = (top.values >= cut) & (top.values > 0)
            batch_min = top.values[kept].min() if kept.any() else cut
            if torch.isinf(self.threshold):
                self.threshold.copy_(batch_min)
            else:
                self.threshold.mul_(_THRESHOLD_EMA).add_((1 - _THRESHOLD_EMA) * batch_min)
        return top.indices, kept

    # ---- training -----------------------------------------------------------------------------

    def forward(self, x: Tensor, dead: Tensor | None = None) -> CrosscoderOutput:
        """Losses for raw activations `x [N, 2, d_in]` (training semantics); `dead [d_sae]` marks latents for AuxK."""
        xn = self._normalised(x)  # [N, 2d]
        centred = self._centred(xn)
        pre, scores = self._scores(centred)
        indices, kept = self._batch_top(pre, scores)  # [N, k_max]
        W_enc_rows = self.W_enc.reshape(-1, self.cfg.d_sae).t().contiguous()  # [d_sae, 2d]
        values = F.relu(gather_dot(centred, W_enc_rows, indices) + self.b_enc[indices]) * kept
        W_dec = self.W_dec.reshape(self.cfg.d_sae, -1)  # [d_sae, 2d]: a latent's A row then its B row
        recon_n = sparse_decode(values, indices, W_dec) + self.b_dec.reshape(-1)
        err = (recon_n - xn).view(len(x), 2, -1)  # [N, 2, d]
        per_model = err.detach().pow(2).sum(-1).mean(0)  # [2] squared error (for the fraction of variance unexplained)
        # the loss of the references' BatchTopK crosscoder: the error's norm per token and model, not its square
        l2 = err.norm(dim=-1).mean()
        aux = xn.new_zeros(())
        if dead is not None and bool(dead.any()) and self.cfg.auxk_alpha > 0:
            aux = self.cfg.auxk_alpha * self._auxk(xn, recon_n, centred, pre, dead, W_enc_rows, W_dec)
        counts = torch.bincount(indices[values > 0], minlength=self.cfg.d_sae)
        return CrosscoderOutput(l2 + aux, per_model.sum(), per_model, aux.detach(), counts.sum().float() / len(x), counts)

    def _auxk(self, xn: Tensor, recon_n: Tensor, centred: Tensor, pre: Tensor, dead: Tensor, W_enc_rows: Tensor,
              W_dec: Tensor) -> Tensor:
        """Gao et al.'s AuxK on both models at once: the top k_aux dead latents reconstruct the error, over its variance."""
        k_aux = min(self.cfg.k_aux, int(dead.sum()))
        indices = pre.masked_fill(~dead, -torch.inf).topk(k_aux, dim=-1, sorted=False).indices
        values = F.relu(gather_dot(centred, W_enc_rows, indices) + self.b_enc[indices])
        residual = (xn - recon_n).detach()
        err = (sparse_decode(values, indices, W_dec) - residual).pow(2).sum(-1).mean()
        return err / (residual - residual.mean(0)).pow(2).sum(-1).mean().clamp(min=1e-12)


# ---- what the decoder norms say ------------------------------------------------------------------

def relative_norms(norms: Tensor) -> Tensor:
    """Minder et al.'s relative decoder norm of `norms [d_sae, 2]`: ((|d_B| - |d_A|) / max(|d_A|, |d_B|) + 1) / 2,
    1 for a latent only B writes, 0 for one only A writes, 0.5 for one both write equally."""
    a, b = norms[:, 0], norms[:, 1]
    return 0.5 * ((b - a) / torch.maximum(a, b).clamp(min=1e-12) + 1)


def latent_classes(relative: Tensor) -> list[str]:
    """Each latent's class by relative decoder norm: b_only, a_only, shared (within SHARED_WITHIN of 0.5) or other."""
    def one(r: float) -> str:
        if r >= B_ONLY_FROM:
            return "b_only"
        if r <= 1 - B_ONLY_FROM:
            return "a_only"
        return "shared" if abs(r - 0.5) <= SHARED_WITHIN else "other"

    return [one(r) for r in relative.tolist()]


def class_counts(classes: list[str]) -> dict[str, int]:
    return {c: classes.count(c) for c in ("a_only", "b_only", "shared", "other")}


# ---- the folder ----------------------------------------------------------------------------------

def save_crosscoder(cc: Crosscoder, folder: str | Path, training: dict[str, Any]) -> Path:
    """Write the crosscoder folder atomically (see the module docstring for its files)."""
    with atomic_dir(folder) as tmp:
        tensors = {"W_enc": cc.W_enc, "W_dec": cc.W_dec, "b_enc": cc.b_enc, "b_dec": cc.b_dec, "threshold": cc.threshold}
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / WEIGHTS))
        (tmp / CFG).write_text(json.dumps(asdict(cc.cfg), indent=2) + "\n")
        (tmp / TRAINING).write_text(json.dumps(training, indent=2) + "\n")
    return Path(folder)


def crosscoder_folder(path: str | Path) -> Path:
    """The crosscoder folder `path` names: the folder itself, or a `diff train` run folder holding `crosscoder/`."""
    path = Path(path)
    for candidate in (path, path / "crosscoder"):
        if (candidate / CFG).is_file() and (candidate / WEIGHTS).is_file():
            return candidate
    raise GreyglassError(f"{path} is not a crosscoder folder: no {CFG} and {WEIGHTS} in it or in {path / 'crosscoder'}; "
                         "give the folder `greyglass diff train` wrote")


def load_crosscoder(path: str | Path, device: str = "cpu") -> Crosscoder:
    """The crosscoder saved at `path` (its folder or its run folder), in eval mode."""
    folder = crosscoder_folder(path)
    cfg = from_json(CrosscoderConfig, read_json_object(folder / CFG), str(folder / CFG))
    cc = Crosscoder(cfg)
    tensors = load_file(str(folder / WEIGHTS))
    expected = {k: tuple(v.shape) for k, v in cc.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if found != expected:
        raise GreyglassError(f"{folder / WEIGHTS} holds {found}, but {CFG} describes {expected}")
    cc.load_state_dict(tensors)
    return cc.to(device).eval()


def read_training(path: str | Path) -> dict[str, Any]:
    return read_json_object(crosscoder_folder(path) / TRAINING)
