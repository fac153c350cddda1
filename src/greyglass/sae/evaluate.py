"""Evaluate an SAE on held-out text: reconstruction, sparsity, and the model's loss with it spliced in.

For each batch of held-out windows the model runs three times:
- clean, capturing the site's activations `x [B, T, d]` (and the clean logits);
- with the SAE's reconstruction `x_hat` in place of `x` at the site (via `models.replacing`);
- with zeros in place of `x` (the zero-ablation baseline).
Each window's first position (BOS, or the attention-sink token where there is none) is left
untouched in both interventions: the SAE is not trained on it (the store drops it) and its
activations are outliers that dominate the error.

CE-loss recovered = (CE_zero - CE_sae) / (CE_zero - CE_clean): 1 means splicing the SAE in
costs nothing, 0 means it is as bad as deleting the site's activations.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from ..config import check_positive
from ..data.corpus import CorpusConfig, windows
from ..models import LoadedModel, capturing, replacing
from .model import SparseAutoencoder

DENSE_RATE = 0.1
"""A latent firing on more than this fraction of tokens counts as dense."""
HIST_EDGES = [x / 2 for x in range(-16, 1)]  # log10 firing rate, -8 .. 0 in half decades


@dataclass(frozen=True)
class EvalConfig:
    """How much held-out text to evaluate on."""

    tokens: int = 20_000
    """Held-out tokens to evaluate on, at least (whole batches of windows; each window's first position excluded)."""
    batch_windows: int = 8
    """Windows per forward pass."""

    def __post_init__(self) -> None:
        check_positive("EvalConfig", "tokens", self.tokens)
        check_positive("EvalConfig", "batch_windows", self.batch_windows)


class _Sums:
    """Running sums over tokens, turned into metrics at the end."""

    def __init__(self, d_in: int, d_sae: int):
        self.n = 0
        self.sse = 0.0
        self.sum_x = torch.zeros(d_in, dtype=torch.float64)
        self.sum_x2 = 0.0
        self.cosine = self.l0 = self.l1 = self.shrink = 0.0
        self.fires = torch.zeros(d_sae, dtype=torch.long)
        self.ce = {"clean": 0.0, "sae": 0.0, "zero": 0.0}
        self.kl = {"sae": 0.0, "zero": 0.0}
        self.n_pred = 0

    def add_activations(self, x: Tensor, latents: Tensor, x_hat: Tensor) -> None:  # [n, d], [n, d_sae], [n, d]
        x, x_hat = x.double(), x_hat.double()
        self.n += len(x)
        self.sse += (x_hat - x).pow(2).sum().item()
        self.sum_x += x.sum(0).cpu()
        self.sum_x2 += x.pow(2).sum().item()
        self.cosine += F.cosine_similarity(x, x_hat, dim=-1).sum().item()
        self.shrink += (x_hat.norm(dim=-1) / x.norm(dim=-1).clamp(min=1e-12)).sum().item()
        active = latents > 0
        self.l0 += active.sum().item()
        self.l1 += latents.abs().sum().item()
        self.fires += active.sum(0).cpu()

    def add_logits(self, ids: Tensor, clean: Tensor, sae: Tensor, zero: Tensor) -> None:  # [B, T], [B, T, V] x3
        target = ids[:, 1:].reshape(-1)
        logp = {name: F.log_softmax(l[:, :-1].float(), -1).flatten(0, 1) for name, l in
                (("clean", clean), ("sae", sae), ("zero", zero))}
        for name, lp in logp.items():
            self.ce[name] += F.nll_loss(lp, target, reduction="sum").item()
        for name in ("sae", "zero"):
            self.kl[name] += F.kl_div(logp[name], logp["clean"], log_target=True, reduction="sum").item()
        self.n_pred += len(target)

    def results(self) -> dict[str, Any]:
        n, d = self.n, len(self.sum_x)
        total_var = self.sum_x2 - (self.sum_x.pow(2).sum() / n).item()
        fvu = self.sse / total_var
        rate = self.fires.double() / n
        log_rate = torch.log10(rate[rate > 0])
        hist = torch.histogram(log_rate.float(), bins=torch.tensor(HIST_EDGES)).hist if len(log_rate) else torch.zeros(16)
        ce = {k: v / self.n_pred for k, v in self.ce.items()}
        return {
            "n_tokens": n,
            "mse": self.sse / (n * d),
            "fvu": fvu,
            "explained_variance": 1 - fvu,
            "cosine": self.cosine / n,
            "l0": self.l0 / n,
            "l1": self.l1 / n,
            "dead_fraction": (rate == 0).double().mean().item(),
            "dense_fraction": (rate > DENSE_RATE).double().mean().item(),
            "density_histogram": {"log10_rate_edges": HIST_EDGES, "counts": [int(c) for c in hist.tolist()],
                                  "never_fired": int((rate == 0).sum())},
            "shrinkage": self.shrink / n,
            "ce_clean": ce["clean"],
            "ce_sae": ce["sae"],
            "ce_zero": ce["zero"],
            "kl_sae": self.kl["sae"] / self.n_pred,
            "kl_zero": self.kl["zero"] / self.n_pred,
            "ce_loss_recovered": (ce["zero"] - ce["sae"]) / (ce["zero"] - ce["clean"])
            if ce["zero"] != ce["clean"] else math.nan,
        }


def evaluate(sae: SparseAutoencoder, lm: LoadedModel, cfg: EvalConfig = EvalConfig(),
             corpus: CorpusConfig | None = None, site: str | None = None, progress: bool = True) -> dict[str, Any]:
    """All the metrics in the module docstring, over `cfg.tokens` held-out tokens."""
    site_name = lm.site(site or sae.cfg.hook_name).name
    sae.check_site(lm.d_model, f"{lm.name} at {site_name}")
    sae = sae.to(lm.device).eval()
    corpus = corpus or CorpusConfig(split="heldout", context_size=sae.cfg.context_size)
    sums = _Sums(sae.cfg.d_in, sae.cfg.d_sae)
    stream = windows(lm.tokenizer, corpus, lm.prepend_bos)
    bar = tqdm(total=cfg.tokens, unit="tok", unit_scale=True, desc="eval SAE", disable=not progress)
    with torch.inference_mode():
        while sums.n < cfg.tokens and (chunk := list(itertools.islice(stream, cfg.batch_windows))):
            ids = torch.tensor([w.tokens for w in chunk], device=lm.device)  # [B, T]
            keep = ~torch.tensor([w.is_sink for w in chunk], device=lm.device)  # [B, T]
            with capturing(lm, [site_name]) as acts:
                clean = lm.model(input_ids=ids, use_cache=False).logits
            x = acts[site_name]  # [B, T, d]
            latents = sae.encode(x[keep])  # [n, d_sae]
            x_hat = sae.decode(latents).to(x.dtype)  # [n, d]
            sums.add_activations(x[keep], latents, x_hat)
            patched = _splice(lm, ids, site_name, keep, x_hat)
            zeroed = _splice(lm, ids, site_name, keep, torch.zeros_like(x_hat))
            sums.add_logits(ids, clean, patched, zeroed)
            bar.update(int(keep.sum()))
    bar.close()
    if sums.n == 0:
        from ..errors import GreyglassError

        raise GreyglassError("the held-out corpus produced no tokens; give a larger --corpus")
    return sums.results()


def _splice(lm: LoadedModel, ids: Tensor, site: str, keep: Tensor, rows: Tensor) -> Tensor:
    """Logits with the site's kept positions (all but each window's first) replaced by `rows [n, d]`."""

    def replace(x: Tensor) -> Tensor:
        out = x.clone()
        out[keep] = rows
        return out

    with replacing(lm, {site: replace}):
        return lm.model(input_ids=ids, use_cache=False).logits


def summary(results: dict[str, Any]) -> str:
    """The headline numbers in plain words."""
    r = results
    return (f"On {r['n_tokens']:,} held-out tokens the SAE explains {r['explained_variance']:.1%} of the "
            f"variance of the activations (cosine {r['cosine']:.3f}) using {r['l0']:.1f} active latents per token; "
            f"{r['dead_fraction']:.1%} of latents never fired and {r['dense_fraction']:.1%} fire on more than "
            f"{DENSE_RATE:.0%} of tokens. Spliced into the model it recovers {r['ce_loss_recovered']:.1%} of the "
            f"loss lost by zeroing the site (cross-entropy {r['ce_clean']:.3f} clean, {r['ce_sae']:.3f} with the SAE, "
            f"{r['ce_zero']:.3f} zeroed; KL to clean {r['kl_sae']:.4f} nats/token).")
