"""Sparse probing (SAEBench's `sparse_probing`) on greyglass's bundled binary tasks: can a few of the
SAE's latents tell the classes apart as well as the raw activations can?

For each task the examples are split into train and test by unit (no unit on both sides), the
site's activations are read, and:
- the raw probe: a logistic regression on the activations (`d_model` features);
- the k-sparse probes, k in `ks`: the k latents with the largest absolute difference of class
  means on the train split (SAEBench's selection), then a logistic regression on those alone.
Test accuracy comes with a 95% interval that resamples clusters (`stats.proportion_ci`).

The tasks (every one balanced or close to it):
- `first_letter`: does a vocabulary word start with a vowel? (the word's activation in the
  first-letter prompt `sae.absorption` builds); units: words; clusters: first letters;
- `cities`: is `<city> is in <country>.` true? (the bundled `cities` statements, last token);
  units and clusters: the statement's pair;
- `language`: is an NTREX-128 news sentence English or French? (the same lines in both
  languages, last token); units and clusters: the line, so a sentence and its translation
  stay on one side;
- `sycophancy`: does the answer agree with the view the user states before the question? (CAA's
  sycophancy items: personas stating a view, each prompt followed by either answer, last token:
  the label needs the persona and the answer together); units and clusters: the question.

SAEBench mean-pools the SAE's latents over a text's tokens; greyglass reads one position (the
word, or the last token, where a causal model has read the whole text), so the latents are the
SAE's encoding of one activation, the object the SAE was trained on.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..data.ntrex import ntrex_sentences
from ..data.statements import group_keys, load_statements
from ..errors import GreyglassError
from ..models.lm import LoadedModel
from ..models.sites import parse_site
from ..models.text_features import text_features
from ..runs import write_config, write_results
from ..stats import proportion_ci
from .absorption import first_letter_prompts, fit_probe, vocab_words, word_activations
from .config import AbsorptionConfig, SparseProbingConfig, SparseProbingRunConfig
from .io import load_sae
from .model import SparseAutoencoder
from .results import KSparseAccuracy, SparseProbingResults, TaskProbing

VOWELS = frozenset("aeiou")


class TaskData(NamedTuple):
    x: Tensor  # [n, d_model] the site's activations
    y: np.ndarray  # [n] 0/1 labels
    units: np.ndarray  # [n] what the train/test split keeps together
    clusters: np.ndarray  # [n] what the intervals resample


def task_data(lm: LoadedModel, site: str, task: str, cfg: SparseProbingConfig, progress: bool = False) -> TaskData:
    """One task's activations, labels, split units and clusters (up to `cfg.examples` examples)."""
    if task == "first_letter":
        return _first_letter(lm, site, cfg, progress)
    layer = _resid_layer(site, lm.n_layers)
    texts, y, units = {"cities": _cities, "language": _language, "sycophancy": _sycophancy}[task](cfg)
    x = text_features(lm, texts, [layer], "last", batch_size=cfg.batch_size, progress=progress)[:, 0]
    return TaskData(x, np.asarray(y), np.asarray(units), np.asarray(units))


def _resid_layer(site: str, n_layers: int) -> int:
    parsed = parse_site(site, n_layers)
    if parsed.kind != "resid_post":
        raise GreyglassError(f"sparse probing reads texts at resid_post sites; the SAE reads {site}")
    return parsed.layer


def _first_letter(lm: LoadedModel, site: str, cfg: SparseProbingConfig, progress: bool) -> TaskData:
    acfg = AbsorptionConfig()
    words = vocab_words(lm.tokenizer, cfg.examples + acfg.icl_examples, seed=cfg.seed)
    if len(words) < 2 * acfg.icl_examples + 10:
        raise GreyglassError(f"sparse probing task first_letter: the tokenizer has only {len(words)} single-token "
                             "words after a space; leave the task out (--task ...) for this model")
    prompts, words = first_letter_prompts(lm.tokenizer, words, acfg.template, acfg.icl_examples)
    x = word_activations(lm, prompts, site, cfg.batch_size, progress)
    return TaskData(x, np.array([w.letter in VOWELS for w in words], dtype=int), np.array([w.text for w in words]),
                    np.array([w.letter for w in words]))


def _cities(cfg: SparseProbingConfig) -> tuple[list[str], list[int], list[str]]:
    statements = load_statements("cities", n=cfg.examples, seed=cfg.seed)
    return [s.text for s in statements], [s.label for s in statements], group_keys(statements)


def _language(cfg: SparseProbingConfig) -> tuple[list[str], list[int], list[str]]:
    n = cfg.examples // 2
    english, french = ntrex_sentences("en", n), ntrex_sentences("fr", n)
    return english + french, [1] * len(english) + [0] * len(french), [f"line {i}" for i in range(n)] * 2


def _sycophancy(cfg: SparseProbingConfig) -> tuple[list[str], list[int], list[str]]:
    from ..behaviour.datasets import load_dataset

    items = load_dataset("caa-sycophancy")
    random.Random(cfg.seed).shuffle(items)
    texts, labels, units = [], [], []
    for it in items[: cfg.examples // 2]:
        for answer, agrees in ((it.answer_matching_behavior, 1), (it.answer_not_matching_behavior[0], 0)):
            texts.append(f"{it.prompt}\n\nAnswer:{answer}")
            labels.append(agrees)
            units.append(it.metadata["cluster"])
    return texts, labels, units


def split_units(units: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """A boolean train mask `[n]`: a seeded share of the distinct units is held out for testing."""
    distinct = sorted(set(units.tolist()))
    random.Random(seed).shuffle(distinct)
    test = set(distinct[: max(1, round(len(distinct) * test_fraction))])
    return np.array([u not in test for u in units.tolist()])


def top_latents_by_mean_difference(z: Tensor, y: np.ndarray, k: int) -> list[int]:
    """SAEBench's selection: the k latents whose class means (on these rows) differ most, in absolute value."""
    pos = torch.as_tensor(y == 1)
    diff = (z[pos].mean(0) - z[~pos].mean(0)).abs()  # [d_sae]
    return diff.topk(min(k, len(diff))).indices.tolist()


def _accuracy(features: np.ndarray, data: TaskData, train: np.ndarray, seed: int):
    # standardised on the train split: the raw residual's scale otherwise stalls the solver
    mean, std = features[train].mean(0), features[train].std(0) + 1e-6
    features = (features - mean) / std
    probe = fit_probe(features[train], data.y[train], seed)
    right = probe.predict(features[~train]) == data.y[~train]
    return proportion_ci(right.astype(float), groups=data.clusters[~train], seed=seed)


def probe_task(sae: SparseAutoencoder, task: str, data: TaskData, cfg: SparseProbingConfig) -> TaskProbing:
    """The raw probe and the k-sparse probes of one task."""
    train = split_units(data.units, cfg.test_fraction, cfg.seed)
    if len(set(data.y[train].tolist())) < 2 or len(set(data.y[~train].tolist())) < 2:
        raise GreyglassError(f"sparse probing task {task}: {len(data.y)} examples leave one class out of the train or "
                             "test split; raise --examples")
    with torch.no_grad():
        z = sae.encode(data.x.to(sae.W_enc.device)).float().cpu()  # [n, d_sae]
    raw = _accuracy(data.x.numpy(), data, train, cfg.seed)
    sparse = []
    for k in cfg.ks:
        latents = top_latents_by_mean_difference(z[torch.as_tensor(train)], data.y[train], k)
        sparse.append(KSparseAccuracy(k, _accuracy(z[:, latents].numpy(), data, train, cfg.seed), tuple(latents)))
    return TaskProbing(task, int(train.sum()), int((~train).sum()), len(set(data.clusters[~train].tolist())), raw,
                       tuple(sparse))


def sparse_probing(sae: SparseAutoencoder, lm: LoadedModel, cfg: SparseProbingConfig = SparseProbingConfig(),
                   site: str | None = None, progress: bool = False) -> SparseProbingResults:
    """Every task of `cfg` on `sae` at `site` (default: the SAE's own)."""
    site = lm.site(site or sae.cfg.hook_name).name
    sae.check_site(lm.d_model, site)
    tasks = tuple(probe_task(sae, t, task_data(lm, site, t, cfg, progress), cfg) for t in cfg.tasks)
    return SparseProbingResults(site, tasks)


def run_sparse_probing(lm: LoadedModel | None, cfg: SparseProbingRunConfig, out: Path,
                       progress: bool = True) -> SparseProbingResults:
    """`sae sparse-probing`: the tasks on an SAE folder; writes the run folder."""
    sae = load_sae(cfg.sae)
    lm = lm if lm is not None else cfg.model.load(sae.cfg.model_name or None)
    write_config(out, "sae_sparse_probing", model=lm.provenance(), config=cfg)
    results = sparse_probing(sae.to(lm.device), lm, cfg.probing, cfg.site, progress)
    write_results(out, results)
    return results
