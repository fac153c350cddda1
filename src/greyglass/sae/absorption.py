"""Feature absorption measured against ground truth: the first-letter benchmark.

Chanin et al., "A is for Absorption" (2024), following SAEBench's `absorption_first_letter`
(sae-bench 0.6.0, `sae_bench/evals/absorption`):
1. words: single-token words from the model's vocabulary (` house`, ` Tiger`), a few kept
   aside as in-context examples; a seeded split keeps `test_fraction` of them for scoring;
2. prompts `{examples}{word} has the first letter:`; the SAE's site is read at the word;
3. ground truth: a one-vs-rest logistic-regression probe per letter on the training words'
   activations, trained as SAEBench trains it (Adam, balanced positive weight, batches of 64, 50 epochs);
4. the letter's main ("split") latents by k-sparse probing: latents ranked by an L1-penalised
   one-vs-rest probe (one output per letter) on the SAE's latents in SAEBench's units (decoder norms
   folded in: `unit_decoder_latents`), k grows while a logistic regression on the top-k
   latents raises test F1 by more than `f1_jump`;
5. each *test* word of the letter that the probe gets right (probe logit > 0) is scored:
   - absorption fraction: the share of the word's probe projection `x . p` that the top
     `max_absorbing_latents` other active latents aligned with the probe (decoder cosine >=
     `fraction_cos_threshold`) carry instead of the main latents; 0 when the main latents
     already carry the projection, when those latents carry less than `share_threshold` of
     it, or when the projection is <= 0;
   - full absorption: every main latent silent, and the single latent with the largest
     projection has decoder cosine >= `full_cos_threshold` and carries >= `share_threshold`
     of a positive projection.
Per letter: mean absorption fraction and full-absorption rate over its probe-right test words,
and the number of main latents. Headline: their means over the letters whose probe reaches test
F1 > `min_probe_f1`, with 95% intervals that resample letters (words of a letter are not
independent evidence). `absorption_scores` is the part that only needs activations, an SAE, a
probe direction and main latents, so synthetic data with a known parent feature uses it too.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from ..errors import GreyglassError
from ..models.hooks import run_to_sites
from ..models.lm import LoadedModel
from ..runs import write_config, write_results
from ..stats import Estimate, mean_ci
from .config import AbsorptionConfig, AbsorptionRunConfig
from .io import load_sae
from .model import SparseAutoencoder
from .results import AbsorbingLatent, AbsorptionHeadline, AbsorptionResults, LetterAbsorption


class Word(NamedTuple):
    token: int
    text: str  # as decoded, leading space included
    letter: str  # lower-case first letter


def vocab_words(tokenizer, n: int, min_letters: int = 2, seed: int = 0, leading_space: bool = True) -> list[Word]:
    """Up to `n` single-token words (letters only, after a space unless `leading_space` is off),
    a seeded sample, sorted by id."""
    pattern = re.compile(rf"^{' ' if leading_space else ' ?'}[A-Za-z]{{{min_letters},}}$")
    special = set(tokenizer.all_special_ids)
    found = []
    for token in range(len(tokenizer)):
        if token in special:
            continue
        text = tokenizer.decode([token])
        if pattern.match(text):
            found.append(Word(token, text, text.strip()[0].lower()))
    random.Random(seed).shuffle(found)
    return sorted(found[:n])


class Prompts(NamedTuple):
    ids: Tensor  # [n, T]: every prompt has the same length
    position: int  # where the word sits
    examples: list[Word]  # the in-context words (removed from the benchmark)


def first_letter_prompts(tokenizer, words: list[Word], template: str, icl_examples: int) -> tuple[Prompts, list[Word]]:
    """Token ids of `{examples}{word} has the first letter:` for each word, built around the word token.

    The examples come from the front of `words` and are returned apart; one shared prefix
    keeps every prompt the same length, so the word sits at one known position.
    """
    examples, rest = words[:icl_examples], words[icl_examples:]
    head, tail = template.split("{word}", 1)
    prefix = "".join(f"{head}{w.text}{tail} {w.letter.upper()}\n" for w in examples) + head
    prefix_ids = tokenizer(prefix).input_ids
    tail_ids = tokenizer(tail, add_special_tokens=False).input_ids
    ids = torch.tensor([prefix_ids + [w.token] + tail_ids for w in rest])  # [n, T]
    return Prompts(ids, len(prefix_ids), examples), rest


@torch.no_grad()
def word_activations(lm: LoadedModel, prompts: Prompts, site: str, batch_size: int, progress: bool = False) -> Tensor:
    """The site's activation at the word of every prompt: `[n, d_model]` float32 on the CPU."""
    out = []
    for lo in tqdm(range(0, len(prompts.ids), batch_size), desc="first-letter prompts", disable=not progress):
        ids = prompts.ids[lo:lo + batch_size].to(lm.device)
        out.append(run_to_sites(lm, ids, [site])[site][:, prompts.position].float().cpu())
    return torch.cat(out)


def _f1(pred: np.ndarray, y: np.ndarray) -> float:
    tp = float((pred & y).sum())
    return 0.0 if tp == 0 else 2 * tp / (pred.sum() + y.sum())


def fit_probe(x: np.ndarray, y: np.ndarray, seed: int = 0):
    """The k-sparse probe on a few latents: a balanced logistic regression (as SAEBench, max_iter 500)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=500, class_weight="balanced", random_state=seed).fit(x, y)


class Probes(NamedTuple):
    """One-vs-rest linear probes: `logits = x @ weight.T + bias`."""

    weight: Tensor  # [n_classes, d]
    bias: Tensor  # [n_classes]

    def logits(self, x: Tensor) -> Tensor:
        return x.float() @ self.weight.T + self.bias


def train_one_vs_rest(x: Tensor, labels: np.ndarray, n_classes: int, weight_decay: float, l1: float = 0.0,
                      seed: int = 0, epochs: int = 50, lr: float = 1e-2, end_lr: float = 1e-5,
                      batch_size: int = 4096, min_steps: int = 0) -> Probes:
    """SAEBench's `train_multi_probe`: one logistic probe per class, trained jointly with Adam (learning rate
    decaying exponentially from `lr` to `end_lr`), each class's positives weighted by negatives / positives,
    plus `l1` times the mean over classes of the L1 norm of the weights. Rows labelled -1 are negatives of
    every class.

    SAEBench trains on a whole vocabulary (tens of thousands of words, many batches per epoch); on a
    sample of a few thousand words its 50 epochs are 50 steps, which leave the probe near its random
    start. `min_steps` > 0 grows the epochs until the run takes at least that many steps (a variant:
    0, the default, is SAEBench's schedule)."""
    x = x.float()
    epochs = max(epochs, math.ceil(min_steps / math.ceil(len(x) / batch_size)))
    y = torch.zeros(len(labels), n_classes)
    rows = np.flatnonzero(labels >= 0)
    y[rows, labels[rows]] = 1
    pos_weight = (len(y) - y.sum(0)) / y.sum(0).clamp(min=1)
    with torch.random.fork_rng():  # the probe's initialisation, seeded without touching the global RNG
        torch.manual_seed(seed)
        probe = torch.nn.Linear(x.shape[1], n_classes)
    opt = torch.optim.Adam(probe.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=math.exp(math.log(end_lr / lr) / epochs))
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    g = torch.Generator().manual_seed(seed)
    with torch.enable_grad():
        for _ in range(epochs):
            for idx in torch.randperm(len(x), generator=g).split(batch_size):
                opt.zero_grad()
                loss = loss_fn(probe(x[idx]), y[idx]) + l1 * probe.weight.abs().sum(-1).mean()
                loss.backward()
                opt.step()
            sched.step()
    return Probes(probe.weight.detach().clone(), probe.bias.detach().clone())


def letter_probes(x: Tensor, labels: np.ndarray, n_classes: int, seed: int = 0) -> Probes:
    """The ground-truth first-letter probes on the model's activations (SAEBench's `train_and_save_probes`:
    weight decay 1e-4, batches of 64)."""
    return train_one_vs_rest(x, labels, n_classes, weight_decay=1e-4, seed=seed, batch_size=64)


def latent_ranking(latents: Tensor, labels: np.ndarray, n_classes: int, seed: int = 0, min_steps: int = 0) -> Tensor:
    """`[n_classes, d_sae]` latents ordered by the weight of an L1-penalised probe on the SAE's latents,
    largest first (SAEBench's k-sparse probing: L1 0.01, weight decay 1e-6; by weight, not |weight|,
    since only latents that predict the letter by firing count)."""
    probes = train_one_vs_rest(latents, labels, n_classes, weight_decay=1e-6, l1=0.01, seed=seed, min_steps=min_steps)
    return torch.argsort(probes.weight, dim=-1, descending=True, stable=True)


def k_sparse_latents(latents: Tensor, y: np.ndarray, train: np.ndarray, ranking: Tensor | np.ndarray, max_k: int,
                     f1_jump: float, seed: int = 0) -> tuple[list[int], float]:
    """The main latents for a binary label: the top-k of `ranking`, k growing from 1 while the test F1 of a
    logistic regression on them (trained on `train`) improves by more than `f1_jump`."""
    lat, ranking = latents.numpy(), np.asarray(ranking)
    test = ~train
    chosen, best = [int(ranking[0])], -1.0
    for k in range(1, max_k + 1):
        cols = ranking[:k]
        if lat[train][:, cols].std() == 0:
            f1 = 0.0
        else:
            probe = fit_probe(lat[train][:, cols], y[train], seed)
            f1 = _f1(probe.predict(lat[test][:, cols]).astype(bool), y[test])
        if k > 1 and f1 - best <= f1_jump:
            break
        chosen, best = [int(c) for c in cols], f1
    return chosen, best


class WordAbsorption(NamedTuple):
    """Per word of the letter that the probe gets right: SAEBench's two measures."""

    fraction: Tensor  # [n] float in [0, 1]: the absorption fraction
    full: Tensor  # [n] bool: full absorption by a single latent
    absorber: Tensor  # [n] long: the fully absorbing latent (-1: none)
    main_silent: Tensor  # [n] bool


SILENT = 1e-8
"""A latent below this activation does not fire (SAEBench's EPS)."""


def absorption_scores(sae: SparseAutoencoder, x: Tensor, probe_dir: Tensor, main: list[int],
                      full_cos_threshold: float = 0.025, fraction_cos_threshold: float = 0.1,
                      share_threshold: float = 0.4, max_absorbing_latents: int = 3) -> WordAbsorption:
    """SAEBench's absorption fraction and full absorption for activations `x [n, d_in]` of words the probe gets right.

    A latent's projection on the unit probe direction p is `latent_j * (W_dec[j] . p)` in the input's
    units (SAEBench's `activation * cos` after it folds the decoder norms into the activations); the
    word's projection is `x . p`.
    """
    p = (probe_dir / probe_dir.norm()).float().to(x.device)
    with torch.no_grad():
        latents = sae.encode(x).float()  # [n, d_sae]
        W_dec = sae.W_dec.float() / sae.scale  # [d_sae, d_in] in the input's units
        dec_proj = W_dec @ p  # [d_sae]
        cos = dec_proj / W_dec.norm(dim=1).clamp(min=1e-12)
        total = x.float() @ p  # [n]
    proj = latents * dec_proj  # [n, d_sae]
    main_t = torch.tensor(main, dtype=torch.long, device=x.device)
    main_silent = (latents[:, main_t] < SILENT).all(-1)
    fraction = _absorption_fraction(proj, total, main_t, cos >= fraction_cos_threshold, share_threshold,
                                    max_absorbing_latents)
    top_proj, top = proj.max(-1)
    # a projection <= 0 is never absorbed: the probe does not see the letter in this activation
    full = main_silent & (total > 0) & (cos[top] >= full_cos_threshold) & (top_proj >= share_threshold * total)
    return WordAbsorption(fraction, full, torch.where(full, top, -1), main_silent)


def _absorption_fraction(proj: Tensor, total: Tensor, main: Tensor, aligned: Tensor, share_threshold: float,
                         max_absorbing: int) -> Tensor:
    """How much of each word's projection the top aligned non-main latents carry instead of the main ones."""
    main_proj = proj[:, main].sum(-1)
    candidates = torch.where(aligned & (proj > 0), proj, torch.zeros_like(proj))
    candidates[:, main] = 0
    absorbing = candidates.topk(min(max_absorbing, proj.shape[1]), dim=-1).values.sum(-1)
    carried = torch.minimum(absorbing, total - main_proj)
    partial = (carried / (carried + main_proj)).clamp(0, 1)
    fraction = torch.where(main_proj <= 0, torch.ones_like(total), partial)
    # nothing to absorb: the main latents carry it all, the candidates carry too little, or x . p <= 0
    none = (total <= 0) | (main_proj >= total) | (absorbing < share_threshold * total)
    return torch.where(none, torch.zeros_like(fraction), fraction)


def first_letter_absorption(sae: SparseAutoencoder, lm: LoadedModel, cfg: AbsorptionConfig = AbsorptionConfig(),
                            site: str | None = None, progress: bool = True) -> AbsorptionResults:
    """Run the benchmark; returns per-letter and headline measures, main latents and absorbing latents."""
    site = lm.site(site or sae.cfg.hook_name).name
    sae.check_site(lm.d_model, site)
    words = vocab_words(lm.tokenizer, cfg.words + cfg.icl_examples, cfg.min_letters, cfg.seed, cfg.leading_space)
    prompts, words = first_letter_prompts(lm.tokenizer, words, cfg.template, cfg.icl_examples)
    x = word_activations(lm, prompts, site, cfg.batch_size, progress)  # [n, d]
    with torch.no_grad():
        latents = sae.encode(x.to(sae.W_enc.device)).float().cpu()  # [n, d_sae]
    scored = score_letters(sae, x, latents, [w.letter for w in words], [w.text.strip() for w in words], cfg,
                           progress)
    return AbsorptionResults(site, len(words), tuple(w.text for w in prompts.examples), *scored)


def run_absorption(lm: LoadedModel | None, cfg: AbsorptionRunConfig, out: Path, progress: bool = True) -> AbsorptionResults:
    """`sae absorption`: the benchmark on the SAE in `cfg.sae`, written as a run folder. Without `lm` the model is
    the one `cfg.model` names, by default the SAE's own."""
    sae = load_sae(cfg.sae)
    lm = lm if lm is not None else cfg.model.load(sae.cfg.model_name)
    write_config(out, "sae_absorption", model=lm.provenance(), config=cfg)
    results = first_letter_absorption(sae, lm, cfg.absorption, site=cfg.site, progress=progress)
    write_results(out, results)
    return results


def unit_decoder_latents(sae: SparseAutoencoder, latents: Tensor) -> Tensor:
    """`latents [n, d_sae]` times their decoder rows' norms in the input's units: the activations of the same SAE
    rewritten with unit decoder rows, which SAEBench's k-sparse probing reads (it folds the decoder norms into
    the activations, `fold_W_dec_norm`). The L1 probe that ranks latents is not invariant to their scale."""
    with torch.no_grad():
        norms = (sae.W_dec.float() / sae.scale).norm(dim=1).to(latents.device)  # [d_sae]
    return latents.float() * norms


def train_test_split(n: int, test_fraction: float, seed: int) -> np.ndarray:
    """A seeded boolean mask of the training rows."""
    return np.random.default_rng(seed).random(n) >= test_fraction


class LetterScores(NamedTuple):
    letters: dict[str, LetterAbsorption]
    absorbing_latents: tuple[AbsorbingLatent, ...]
    headline: AbsorptionHeadline


def score_letters(sae: SparseAutoencoder, x: Tensor, latents: Tensor, letters: list[str], texts: list[str],
                  cfg: AbsorptionConfig, progress: bool = False) -> LetterScores:
    """The benchmark from the words' activations `x [n, d]` and latents `[n, d_sae]`: probes and k-sparse
    probes on the training words, absorption on the test words the probe gets right, headline means."""
    letters_of = np.array(letters)
    train = train_test_split(len(letters_of), cfg.test_fraction, cfg.seed)
    counts = Counter(letters_of.tolist())
    kept = [l for l in sorted(counts) if counts[l] >= cfg.min_words_per_letter
            and (letters_of[train] == l).any() and (letters_of[~train] == l).any()]
    if not kept:
        raise GreyglassError(f"no letter has {cfg.min_words_per_letter} words among the {len(letters_of)} sampled; "
                             "raise --words or lower --min-words-per-letter")
    labels = np.array([kept.index(l) if l in kept else -1 for l in letters_of])
    probes = letter_probes(x[train], labels[train], len(kept), cfg.seed)
    logits = probes.logits(x)  # [n, letters]
    folded = unit_decoder_latents(sae, latents)  # [n, d_sae]
    # SAEBench's L1 probe has one output per letter with training words, kept for scoring or not
    present = sorted(set(letters_of[train].tolist()))
    ranking = latent_ranking(folded[train], np.array([present.index(l) for l in letters_of[train]]), len(present),
                             cfg.seed, cfg.latent_probe_min_steps)
    per_letter: dict[str, LetterAbsorption] = {}
    absorbing: list[AbsorbingLatent] = []
    for c, letter in enumerate(tqdm(kept, desc="letters", disable=not progress)):
        y = letters_of == letter
        said = (logits[:, c] > 0).numpy()
        main, sparse_f1 = k_sparse_latents(folded, y, train, ranking[present.index(letter)], cfg.max_k, cfg.f1_jump,
                                           cfg.seed)
        right = ~train & y & said  # test words only: the probe never saw them
        scores = absorption_scores(sae, x[torch.from_numpy(right)].to(sae.W_enc.device), probes.weight[c], main,
                                   cfg.full_cos_threshold, cfg.fraction_cos_threshold, cfg.share_threshold,
                                   cfg.max_absorbing_latents)
        per_letter[letter] = _letter_row(y, train, said, main, sparse_f1, scores, cfg.min_probe_f1)
        absorbing += _absorbing_latents(letter, [t for t, r in zip(texts, right) if r], scores.absorber.tolist())
    return LetterScores(per_letter, tuple(absorbing), headline(per_letter))


def _letter_row(y: np.ndarray, train: np.ndarray, said: np.ndarray, main: list[int], sparse_f1: float,
                scores: WordAbsorption, min_probe_f1: float) -> LetterAbsorption:
    n_right = len(scores.fraction)
    probe_f1 = _f1(said[~train], y[~train])
    return LetterAbsorption(
        words=int(y.sum()), test_words=int((y & ~train).sum()), probe_f1=round(probe_f1, 4), main_latents=tuple(main),
        split_features=len(main), k_sparse_f1=round(sparse_f1, 4), probe_right=n_right,
        full_absorbed=int(scores.full.sum()),
        mean_absorption_fraction=round(float(scores.fraction.sum()) / n_right, 4) if n_right else None,
        full_absorption_rate=round(float(scores.full.sum()) / n_right, 4) if n_right else None,
        # SAEBench averages only letters the model represents (probe F1 above the bar) and that have words to score
        scored=bool(probe_f1 > min_probe_f1 and n_right > 0))


def _absorbing_latents(letter: str, texts: list[str], absorbers: list[int]) -> list[AbsorbingLatent]:
    by_latent: dict[int, list[str]] = defaultdict(list)
    for t, a in zip(texts, absorbers):
        if a >= 0:
            by_latent[a].append(t)
    return [AbsorbingLatent(letter, a, len(ws), tuple(ws[:8])) for a, ws in sorted(by_latent.items(), key=lambda kv: -len(kv[1]))]


def headline(per_letter: dict[str, LetterAbsorption]) -> AbsorptionHeadline:
    """SAEBench's headline: each measure's mean over the scored letters, with a 95% interval that
    resamples letters (the words of one letter share its probe and main latents)."""
    scored = [r for r in per_letter.values() if r.scored]

    def mean_over_letters(values: list[float]) -> Estimate | None:
        return Estimate(*(round(v, 4) for v in mean_ci(values))) if scored else None

    return AbsorptionHeadline(
        letters_scored=len(scored), probe_right_words=sum(r.probe_right for r in scored),
        mean_probe_f1=_mean([r.probe_f1 for r in per_letter.values()]),
        mean_k_sparse_f1=_mean([r.k_sparse_f1 for r in per_letter.values()]),
        mean_absorption_fraction=mean_over_letters([r.mean_absorption_fraction for r in scored]),
        full_absorption_rate=mean_over_letters([r.full_absorption_rate for r in scored]),
        mean_split_features=mean_over_letters([r.split_features for r in scored]))


def _mean(values: list[float]) -> float:
    return round(float(np.mean(values)), 4)
