"""Meta-SAEs: a BatchTopK SAE trained on another SAE's decoder rows (Bussmann et al., 2024).

Each decoder row (a latent's direction, unit norm) is an input; the meta-SAE explains it as a
sparse sum of a few meta-latents. A meta-latent groups the latents that share a direction
(its members), and a latent explained by several strong meta-latents is a composition of
them ("starts with S" + "short word"): the kind of latent feature absorption produces.
`fraction of variance explained` says how much of the dictionary's geometry the
meta-dictionary captures.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from ..activations import rows_as_windows, shuffled_rows
from ..errors import GreyglassError
from ..models.lm import LoadedModel
from ..runs import write_config, write_results
from .config import BatchTopKConfig, MetaConfig, MetaRunConfig, SAEConfig, TrainConfig
from .io import load_sae
from .model import SparseAutoencoder
from .results import CompositionalLatent, MetaLatent, MetaMember, MetaResults
from .train import train_saes


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
    batches = shuffled_rows(lambda epoch: [rows_as_windows({"": rows})], batch, buffer_rows=d_sae, seed=cfg.seed)
    return train_saes([mcfg], tcfg, batches, out, progress=progress).saes[0]


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


META_SAE = "sae"
"""The meta-SAE's folder in a `sae meta` run folder."""


def meta_report(meta: SparseAutoencoder, sae: SparseAutoencoder, cfg: MetaConfig,
                lm: LoadedModel | None = None) -> MetaResults:
    """What `greyglass sae meta` measures: variance explained, members of each meta-latent, compositional latents;
    with `lm`, the logit-lens tokens of each."""
    a = analyse(meta, sae, cfg)
    latent_tokens = lens_tokens(lm, unit_rows(sae), cfg.top_tokens) if lm is not None else None
    meta_tokens = lens_tokens(lm, meta.W_dec.detach().float(), cfg.top_tokens) if lm is not None else None

    def tokens(names: list[list[str]] | None, i: int) -> tuple[str, ...] | None:
        return tuple(names[i]) if names is not None else None

    metas = []
    for j in range(a.codes.shape[1]):
        col = a.codes[:, j]
        members = [int(i) for i in col.argsort(descending=True)[: cfg.members] if col[i] > 0]
        metas.append(MetaLatent(j, int((col > 0).sum()), tuple(MetaMember(i, round(float(col[i]), 4),
                                                                          tokens(latent_tokens, i)) for i in members),
                                tokens(meta_tokens, j)))
    metas.sort(key=lambda m: -m.n_members)
    flagged = a.compositional.nonzero().flatten().tolist()
    comp = []
    for i in flagged:
        parts = sorted(a.codes[i].nonzero().flatten().tolist(), key=lambda j: -float(a.codes[i, j]))
        comp.append(CompositionalLatent(i, tuple(parts), round(float(a.row_cos[i]), 4), tokens(latent_tokens, i)))
    d_sae = int(a.codes.shape[0])
    return MetaResults(
        d_sae=d_sae, meta_latents=int(a.codes.shape[1]), k=cfg.k, fraction_variance_explained=round(a.fve, 4),
        mean_meta_latents_per_latent=round(float((a.codes > 0).sum(-1).float().mean()), 3),
        n_compositional=len(flagged), fraction_compositional=round(len(flagged) / d_sae, 4),
        compositional=tuple(comp), meta=tuple(metas), meta_sae=META_SAE)


def run_meta(lm: LoadedModel | None, cfg: MetaRunConfig, out: Path, progress: bool = True) -> MetaResults:
    """`sae meta`: train the meta-SAE on the decoder rows of the SAE in `cfg.sae` and read it; writes the run
    folder. The logit lens runs on `lm`, or without it on the model `cfg.model` names (the SAE's own by default)."""
    sae = load_sae(cfg.sae)
    if cfg.lens and lm is None:
        lm = cfg.model.load(sae.cfg.model_name)
    lens = lm if cfg.lens else None
    write_config(out, "sae_meta", model=lens.provenance() if lens is not None else None, config=cfg)
    meta = train_meta_sae(sae, cfg.meta, out, progress=progress)
    results = meta_report(meta, sae, cfg.meta, lens)
    write_results(out, results)
    return results
