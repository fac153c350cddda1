"""`build_features`: stream activations through the SAE once and write the feature database."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..config import check_positive
from ..errors import GreyglassError
from ..models import LoadedModel
from ..sae.model import SparseAutoencoder
from .db import DB_NAME, write_db
from .lens import logit_lens, token_strings
from .source import Batch, encode_batch
from .stats import StatsAccumulator


@dataclass(frozen=True)
class FeaturesConfig:
    """How much text to read and what to keep per latent."""

    tokens: int = 100_000
    """Tokens to run through the SAE (BOS excluded)."""
    top_k: int = 20
    """Max-activating contexts kept per latent."""
    n_samples: int = 20
    """Random active contexts kept per latent (shown sorted, as samples across its quantiles)."""
    window: int = 10
    """Tokens of context on each side of the activating token."""
    batch_windows: int = 8
    """Windows per forward pass."""
    lens_tokens: int = 10
    """Promoted and suppressed output tokens kept per latent by the logit lens."""

    def __post_init__(self) -> None:
        for name in ("tokens", "top_k", "n_samples", "batch_windows", "lens_tokens"):
            check_positive("FeaturesConfig", name, getattr(self, name))
        if self.window < 0:
            raise GreyglassError(f"FeaturesConfig.window must be >= 0, got {self.window}")


def build_features(lm: LoadedModel, sae: SparseAutoencoder, batches: Iterable[Batch], cfg: FeaturesConfig,
                   out: str | Path, meta: dict[str, Any], progress: bool = True) -> dict[str, Any]:
    """One pass over `batches`; writes `out/features.sqlite` and returns summary numbers.

    Ctrl-C stops the pass early: the database is still written from the tokens seen so far
    (marked `complete: false`) before the interrupt is passed on.
    """
    sae.check_site(lm.d_model, lm.name)
    acc = StatsAccumulator(sae.cfg.d_sae, cfg.top_k, cfg.n_samples, cfg.window)
    start, interrupted = time.perf_counter(), False
    bar = tqdm(total=cfg.tokens, unit="tok", desc="features", disable=not progress)
    try:
        for batch in batches:
            acc.update(batch.tokens, encode_batch(sae, batch), batch.mask)
            bar.update(int(batch.mask.sum()))
    except KeyboardInterrupt:
        interrupted = True
    bar.close()
    stats = acc.result()
    if stats.n_tokens == 0:
        raise GreyglassError("no tokens were read, so there are no statistics to write")
    seconds = time.perf_counter() - start
    lens = logit_lens(lm, sae.W_dec.detach().float(), cfg.lens_tokens)
    ids = torch.cat([stats.top.tokens.flatten(), stats.samples.tokens.flatten(), lens.promoted.flatten(),
                     lens.suppressed.flatten()]).unique()
    strings = token_strings(lm.tokenizer, ids.tolist())
    meta = {**meta, "d_sae": sae.cfg.d_sae, "site": sae.cfg.hook_name, "complete": not interrupted}
    write_db(Path(out) / DB_NAME, stats, lens, strings, meta)
    density = stats.density
    summary = {
        "n_tokens": stats.n_tokens, "d_sae": stats.d_sae, "complete": not interrupted,
        "dead_latents": int((stats.n_active == 0).sum()),
        "median_density": float(density.median()), "mean_l0": float(stats.n_active.sum()) / stats.n_tokens,
        "seconds": round(seconds, 2),
        "latent_tokens_per_second": round(stats.d_sae * stats.n_tokens / max(seconds, 1e-9)),
    }
    if interrupted:
        raise KeyboardInterrupt
    return summary
