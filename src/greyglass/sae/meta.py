"""Meta-SAEs: a BatchTopK SAE trained on another SAE's decoder rows (Bussmann et al., 2024).

Each decoder row (a latent's direction, unit norm) is an input; the meta-SAE explains it as a
sparse sum of a few meta-latents. A meta-latent groups the latents that share a direction
(its members), and a latent explained by several strong meta-latents is a composition of
them ("starts with S" + "short word"): the kind of latent feature absorption produces.
`fraction of variance explained` says how much of the dictionary's geometry the
meta-dictionary captures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..config import check_positive
from ..errors import GreyglassError
from ..models.lm import LoadedModel
from .config import BatchTopKConfig, SAEConfig, TrainConfig
from .model import SparseAutoencoder
from .train import train_saes


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


_SEED_OFFSET = 1_000_003


class MetaAnalysis(NamedTuple):
    codes: Tensor  # [d_sae, n_meta] meta-latent values of each decoder row
    fve: float  # fraction of the rows' variance the meta-SAE explains
    row_cos: Tensor  # [d_sae] cosine between each row and its reconstruction
    strong: Tensor  # [d_sae] number of strong meta-latents per latent
    compositional: Tensor  # [d_sae] bool


def unit_rows(sae: SparseAutoencoder) -> Tensor:
    W = sae.W_dec.detach().float().cpu()
    return W / W.norm(dim=1, keepdim=True).clamp(min=1e-12)  # [d_sae, d_in]


def train_meta_sae(sae: SparseAutoencoder, cfg: MetaConfig, out: str | Path, progress: bool = True) -> SparseAutoencoder:
    """Train a BatchTopK meta-SAE on `sae`'s unit decoder rows; it is saved under `out/sae`."""
    rows = unit_rows(sae)
    d_sae, d_in = rows.shape
    n_meta = cfg.meta_latents or max(2, d_sae // 16)
    if cfg.k > n_meta:
        raise GreyglassError(f"MetaConfig.k = {cfg.k} is larger than the {n_meta} meta-latents; lower --k")
    batch = min(cfg.batch_size, d_sae)
    mcfg = SAEConfig(arch=BatchTopKConfig(k=cfg.k, k_aux=min(256, d_in // 2)), d_in=d_in, d_sae=n_meta,
                     dead_tokens=batch * 50, b_dec_init="zeros", norm_scale=1.0,
                     model_name=sae.cfg.model_name, hook_name="")
    # an SAE's initial rows come from the same generator for the same seed and d_in: with the
    # same seed the meta-latents would start on the SAE's own initial rows, so offset it
    tcfg = TrainConfig(tokens=cfg.steps * batch, batch_size=batch, lr=cfg.lr, warmup_steps=min(100, cfg.steps // 10),
                       seed=cfg.seed + _SEED_OFFSET)
    return train_saes([mcfg], tcfg, _row_batches(rows, batch, cfg.seed), out, progress=progress).saes[0]


def _row_batches(rows: Tensor, batch: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(len(rows), generator=gen)
        for lo in range(0, len(rows) - batch + 1, batch):
            yield {"": rows[perm[lo:lo + batch]]}


@torch.no_grad()
def analyse(meta: SparseAutoencoder, sae: SparseAutoencoder, cfg: MetaConfig) -> MetaAnalysis:
    """Encode every decoder row with the meta-SAE; flag the compositional latents."""
    rows = unit_rows(sae)
    codes = meta.encode(rows).float()  # [d_sae, n_meta]
    recon = meta.decode(codes)
    fve = 1 - float((rows - recon).pow(2).sum() / (rows - rows.mean(0)).pow(2).sum())
    row_cos = torch.nn.functional.cosine_similarity(rows, recon, dim=-1)
    top = codes.max(-1, keepdim=True).values
    strong = ((codes >= cfg.strong_share * top) & (codes > 0)).sum(-1)
    return MetaAnalysis(codes, fve, row_cos, strong, (strong >= 2) & (row_cos >= cfg.min_cos))


def lens_tokens(lm: LoadedModel, rows: Tensor, n: int) -> list[list[str]]:
    """The `n` tokens each row `[m, d_model]` promotes most through the logit lens."""
    from ..models.lens import logit_lens
    from ..models.tokens import token_strings

    ids = logit_lens(lm, rows, n=n).promoted  # [m, n]
    names = token_strings(lm.tokenizer, ids.flatten().tolist())
    return [[names[int(i)] for i in r] for r in ids]


def meta_report(meta: SparseAutoencoder, sae: SparseAutoencoder, cfg: MetaConfig,
                lm: LoadedModel | None = None) -> dict[str, Any]:
    """results.json of `greyglass sae meta`: variance explained, members of each meta-latent, compositional latents."""
    a = analyse(meta, sae, cfg)
    lens = lm is not None
    latent_tokens = lens_tokens(lm, unit_rows(sae), cfg.top_tokens) if lens else None
    meta_tokens = lens_tokens(lm, meta.W_dec.detach().float(), cfg.top_tokens) if lens else None
    metas = []
    for j in range(a.codes.shape[1]):
        col = a.codes[:, j]
        order = col.argsort(descending=True)
        members = [int(i) for i in order[: cfg.members] if col[i] > 0]
        metas.append({"meta_latent": j, "n_members": int((col > 0).sum()),
                      "members": [{"latent": i, "value": round(float(col[i]), 4),
                                   **({"tokens": latent_tokens[i]} if lens else {})} for i in members],
                      **({"tokens": meta_tokens[j]} if lens else {})})
    metas.sort(key=lambda m: -m["n_members"])
    flagged = a.compositional.nonzero().flatten().tolist()
    comp = []
    for i in flagged:
        parts = a.codes[i].nonzero().flatten().tolist()
        parts.sort(key=lambda j: -float(a.codes[i, j]))
        comp.append({"latent": i, "meta_latents": parts, "row_cos": round(float(a.row_cos[i]), 4),
                     **({"tokens": latent_tokens[i]} if lens else {})})
    return {"d_sae": int(a.codes.shape[0]), "meta_latents": int(a.codes.shape[1]), "k": cfg.k,
            "fraction_variance_explained": round(a.fve, 4),
            "mean_meta_latents_per_latent": round(float((a.codes > 0).sum(-1).float().mean()), 3),
            "n_compositional": len(flagged), "fraction_compositional": round(len(flagged) / a.codes.shape[0], 4),
            "compositional": comp, "meta": metas}


def summary(results: dict[str, Any]) -> str:
    lines = [f"meta-SAE with {results['meta_latents']} meta-latents explains "
             f"{results['fraction_variance_explained']:.1%} of the variance of {results['d_sae']} decoder rows "
             f"({results['mean_meta_latents_per_latent']:.1f} meta-latents per latent); "
             f"{results['n_compositional']} latents ({results['fraction_compositional']:.1%}) look like "
             "compositions of several meta-latents"]
    for m in results["meta"][:5]:
        tokens = f" (promotes {', '.join(t.strip() for t in m['tokens'])})" if "tokens" in m else ""
        lines.append(f"  meta-latent {m['meta_latent']}: {m['n_members']} members, e.g. latents "
                     + ", ".join(str(x["latent"]) for x in m["members"][:5]) + tokens)
    return "\n".join(lines)
