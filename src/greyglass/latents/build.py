"""`build_features`: stream activations through the SAE once and write the feature database.

`run_build` is `greyglass features build`: the activations from the model on a corpus or from an
activation store, the database, optional explanations, and the run's `config.json` and
`results.json` beside the database.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..activations import Windows, model_windows, store_windows, take_tokens
from ..errors import GreyglassError
from ..models.lens import logit_lens
from ..models.lm import LoadedModel
from ..models.tokens import token_strings
from ..runs import write_config, write_results
from .config import BuildConfig, BuildResults, FeaturesConfig
from .db import DB_NAME, FeatureDB, write_db
from ..sae.io import load_sae
from ..sae.model import SparseAutoencoder
from .source import encode_batch
from .stats import StatsAccumulator


def build_features(lm: LoadedModel, sae: SparseAutoencoder, batches: Iterable[Windows], cfg: FeaturesConfig,
                   out: str | Path, meta: dict[str, Any], progress: bool = True) -> BuildResults:
    """One pass over `batches` (windows holding the SAE's site); writes `out/features.sqlite` and returns summary
    numbers.

    Ctrl-C stops the pass early: the database is still written from the tokens seen so far
    (marked `complete: false`) before the interrupt is passed on.
    """
    sae.check_site(lm.d_model, lm.name)
    site = lm.site(sae.cfg.hook_name).name
    acc = StatsAccumulator(sae.cfg.d_sae, cfg.top_k, cfg.n_samples, cfg.window)
    start, interrupted = time.perf_counter(), False
    bar = tqdm(total=cfg.tokens, unit="tok", desc="features", disable=not progress)
    try:
        for batch in batches:
            acc.update(batch.tokens, encode_batch(sae, batch.acts[site], batch.mask), batch.mask)
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
    summary = BuildResults(
        n_tokens=stats.n_tokens, d_sae=stats.d_sae, site=sae.cfg.hook_name, complete=not interrupted,
        dead_latents=int((stats.n_active == 0).sum()), median_density=float(density.median()),
        mean_l0=float(stats.n_active.sum()) / stats.n_tokens, seconds=round(seconds, 2),
        latent_tokens_per_second=round(stats.d_sae * stats.n_tokens / max(seconds, 1e-9)), database=DB_NAME)
    if interrupted:
        raise KeyboardInterrupt
    return summary


def run_build(lm: LoadedModel, cfg: BuildConfig, out: str | Path, progress: bool = True) -> BuildResults:
    """`greyglass features build`: the feature database of `cfg.sae` in `out`, with the run's files beside it."""
    sae = load_sae(cfg.sae)
    client = _explainer(cfg)  # before the long pass, so a bad URL fails at once
    batches, fingerprint = _activations(lm, sae, cfg)
    write_config(out, "features", model=lm.provenance(), config=cfg, data_fingerprint=fingerprint)
    results = build_features(lm, sae, batches, cfg.features, out, {"sae": cfg.sae, "model": lm.name}, progress)
    if client is not None:
        from .explainer import explain_latents

        results = replace(results, explanations=explain_latents(FeatureDB(out), Path(out) / DB_NAME, client,
                                                                cfg.explain_top))
    write_results(out, results)
    return results


def _explainer(cfg: BuildConfig):
    """The explainer's client when `cfg.explainer` names a server, else None."""
    if not cfg.explainer:
        return None
    from ..http_client import JsonClient
    from .explainer import ExplainerClient

    return ExplainerClient(JsonClient(cfg.explainer), cfg.explainer_model)


def _activations(lm: LoadedModel, sae: SparseAutoencoder, cfg: BuildConfig) -> tuple[Iterator[Windows], str]:
    """The windows the statistics read, from the store or the model on the corpus, and their data fingerprint."""
    sites, n, per_batch = [sae.cfg.hook_name], cfg.features.tokens, cfg.features.batch_windows
    if cfg.store is None:
        from ..data.corpus import corpus_fingerprint

        return take_tokens(model_windows(lm, sites, cfg.corpus, per_batch), n), corpus_fingerprint(cfg.corpus)
    from ..store.reader import ActivationStore

    store = ActivationStore(cfg.store)
    if store.manifest["model"]["sha256"] != lm.sha256:
        raise GreyglassError(f"activation store {cfg.store} was captured from {store.manifest['model']['name']}, "
                             f"not {lm.name}; pass the same --model the store was captured with")
    return take_tokens(store_windows(store, sites, per_batch), n), store.manifest["corpus"]["fingerprint"]
