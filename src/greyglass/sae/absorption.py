"""Feature absorption measured against ground truth: the first-letter benchmark.

Chanin et al., "A is for Absorption" (2024), as run by SAEBench:
1. words: single-token words from the model's vocabulary (` house`, ` Tiger`), a few kept
   aside as in-context examples;
2. prompts `{examples}{word} has the first letter:`; the SAE's site is read at the word;
3. a logistic-regression probe per letter on those activations (the ground truth: the
   model knows the first letter);
4. the letter's main latents by k-sparse probing on the SAE's latents: latents ranked by
   mean activation on the letter's words minus the rest, k grows while the probe's F1
   improves by more than `f1_jump`;
5. a word of the letter is *absorbed* when the probe is right, every main latent is silent,
   and another active latent whose decoder row has cosine >= `cos_threshold` with the probe
   carries >= `share_threshold` of the SAE's projection on the probe direction;
   *partially absorbed* when the main latents fire but such other latents still carry that
   share.
The absorption rate of a letter is absorbed words / words the probe gets right.
`absorption_rates` is the part that only needs latents, decoder rows, a probe direction and
labels, so synthetic data with a known parent feature uses it too.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from ..config import check_positive
from ..errors import GreyglassError
from ..models import LoadedModel, run_to_sites
from .model import SparseAutoencoder


@dataclass(frozen=True)
class AbsorptionConfig:
    """The first-letter absorption benchmark (defaults as in SAEBench)."""

    words: int = 2000
    """At most this many single-token words from the vocabulary (a seeded sample)."""
    min_letters: int = 2
    """Shortest word, in letters."""
    leading_space: bool = True
    """Only tokens that start with a space (whole words, not pieces like `ouraging`)."""
    icl_examples: int = 2
    """In-context examples before each prompt (`tiger has the first letter: T`)."""
    template: str = "{word} has the first letter:"
    """The prompt; {word} is the vocabulary token."""
    min_words_per_letter: int = 10
    """Letters with fewer words are skipped (too few to fit a probe)."""
    test_fraction: float = 0.3
    """Words held out to score the probes and pick the main latents."""
    max_k: int = 10
    """Largest number of main latents per letter."""
    f1_jump: float = 0.03
    """k-sparse probing adds a latent only while it raises F1 by more than this."""
    cos_threshold: float = 0.025
    """An absorbing latent's decoder row has at least this cosine with the probe direction."""
    share_threshold: float = 0.4
    """... and carries at least this share of the SAE's projection on the probe."""
    batch_size: int = 64
    """Prompts per forward pass."""
    seed: int = 0
    """Seed for the word sample and the train/test split."""

    def __post_init__(self) -> None:
        for name in ("words", "min_letters", "min_words_per_letter", "max_k", "batch_size"):
            check_positive("AbsorptionConfig", name, getattr(self, name))
        if "{word}" not in self.template:
            raise GreyglassError(f"AbsorptionConfig.template must contain {{word}}, got {self.template!r}")
        for name in ("test_fraction", "f1_jump", "cos_threshold", "share_threshold"):
            if not 0 <= getattr(self, name) < 1:
                raise GreyglassError(f"AbsorptionConfig.{name} must be in [0, 1), got {getattr(self, name)!r}")


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
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000, class_weight="balanced", random_state=seed).fit(x, y)


def k_sparse_latents(latents: Tensor, y: np.ndarray, train: np.ndarray, max_k: int, f1_jump: float,
                     seed: int = 0) -> tuple[list[int], float]:
    """The main latents for a binary label: grow k while the test F1 of a probe on the top-k latents
    improves by more than `f1_jump`. Latents are ranked by mean activation on positives minus negatives."""
    lat = latents.numpy()
    ranking = np.argsort(-(lat[train & y].mean(0) - lat[train & ~y].mean(0)), kind="stable")
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


class Absorption(NamedTuple):
    """Per token of the positive class (the probe right): what happened."""

    absorbed: Tensor  # [n] bool: main latents silent, another aligned latent carries the projection
    partial: Tensor  # [n] bool: main latents fire, other aligned latents still carry the share
    absorber: Tensor  # [n] long: the absorbing latent (-1: none)
    main_silent: Tensor  # [n] bool


def absorption_rates(sae: SparseAutoencoder, x: Tensor, probe_dir: Tensor, main: list[int],
                     cos_threshold: float = 0.025, share_threshold: float = 0.4) -> Absorption:
    """Apply the absorption rule to activations `x [n, d_in]` where the feature is present and the probe right.

    A latent's contribution to the probe projection is `latent_j * (W_dec[j] . probe_dir)`; its
    share is relative to the projection of the input itself, `(x - b_dec) . probe_dir`, as in SAEBench.
    """
    probe_dir = (probe_dir / probe_dir.norm()).float().to(x.device)
    with torch.no_grad():
        latents = sae.encode(x).float()  # [n, d_sae]
        W_dec = sae.W_dec.float() / sae.scale  # [d_sae, d_in] in the input's units
        dec_proj = W_dec @ probe_dir  # [d_sae]
        cos = dec_proj / W_dec.norm(dim=1).clamp(min=1e-12)
        total = ((x.float() - sae.b_dec / sae.scale) @ probe_dir).clamp(min=1e-6)  # [n]
    contrib = latents * dec_proj  # [n, d_sae]
    main_t = torch.tensor(main, dtype=torch.long, device=x.device)
    main_silent = (latents[:, main_t] <= 0).all(-1)
    others = contrib.clone()
    others[:, main_t] = 0
    others = others * (cos >= cos_threshold) * (latents > 0)
    best, absorber = others.max(-1)
    absorbed = main_silent & (best / total >= share_threshold)
    partial = ~main_silent & (others.clamp(min=0).sum(-1) / total >= share_threshold)
    return Absorption(absorbed, partial, torch.where(absorbed, absorber, -1), main_silent)


def first_letter_absorption(sae: SparseAutoencoder, lm: LoadedModel, cfg: AbsorptionConfig = AbsorptionConfig(),
                            site: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Run the benchmark; returns per-letter and overall rates, main latents and absorbing latents."""
    site = lm.site(site or sae.cfg.hook_name).name
    sae.check_site(lm.d_model, site)
    words = vocab_words(lm.tokenizer, cfg.words + cfg.icl_examples, cfg.min_letters, cfg.seed, cfg.leading_space)
    prompts, words = first_letter_prompts(lm.tokenizer, words, cfg.template, cfg.icl_examples)
    x = word_activations(lm, prompts, site, cfg.batch_size, progress)  # [n, d]
    with torch.no_grad():
        latents = sae.encode(x.to(sae.W_enc.device)).float().cpu()  # [n, d_sae]
    letters_of = np.array([w.letter for w in words])
    train = np.random.default_rng(cfg.seed).random(len(words)) >= cfg.test_fraction
    counts = Counter(letters_of.tolist())
    per_letter: dict[str, dict[str, Any]] = {}
    absorbing: list[dict[str, Any]] = []
    for letter in tqdm(sorted(counts), desc="letters", disable=not progress):
        y = letters_of == letter
        if counts[letter] < cfg.min_words_per_letter or y[train].sum() == 0 or y[~train].sum() == 0:
            continue
        probe = fit_probe(x[train].numpy(), y[train], cfg.seed)
        probe_f1 = _f1(probe.predict(x[~train].numpy()).astype(bool), y[~train])
        main, sparse_f1 = k_sparse_latents(latents, y, train, cfg.max_k, cfg.f1_jump, cfg.seed)
        # as SAEBench: every word of the letter the probe gets right (train and test) is scored
        right = y & probe.predict(x.numpy()).astype(bool)
        direction = torch.tensor(probe.coef_[0], dtype=torch.float32)
        result = absorption_rates(sae, x[torch.from_numpy(right)].to(sae.W_enc.device), direction, main,
                                  cfg.cos_threshold, cfg.share_threshold)
        n_right = int(right.sum())
        per_letter[letter] = {"words": int(y.sum()), "probe_f1": round(probe_f1, 4), "main_latents": main,
                              "k_sparse_f1": round(sparse_f1, 4), "probe_right": n_right,
                              "absorbed": int(result.absorbed.sum()), "partial": int(result.partial.sum()),
                              "absorption_rate": round(float(result.absorbed.sum()) / max(n_right, 1), 4),
                              "partial_absorption_fraction": round(float(result.partial.sum()) / max(n_right, 1), 4)}
        right_words = [w for w, r in zip(words, right) if r]
        by_latent: dict[int, list[str]] = defaultdict(list)
        for w, a in zip(right_words, result.absorber.tolist()):
            if a >= 0:
                by_latent[a].append(w.text.strip())
        absorbing += [{"letter": letter, "latent": a, "words": len(ws), "examples": ws[:8]}
                      for a, ws in sorted(by_latent.items(), key=lambda kv: -len(kv[1]))]
    if not per_letter:
        raise GreyglassError(f"no letter has {cfg.min_words_per_letter} words among the {len(words)} sampled; "
                             "raise --words or lower --min-words-per-letter")
    right = sum(r["probe_right"] for r in per_letter.values())
    return {"site": site, "n_words": len(words), "icl_examples": [w.text for w in prompts.examples],
            "letters": per_letter, "absorbing_latents": absorbing,
            "absorption_rate": round(sum(r["absorbed"] for r in per_letter.values()) / max(right, 1), 4),
            "mean_letter_absorption_rate": round(float(np.mean([r["absorption_rate"] for r in per_letter.values()])), 4),
            "partial_absorption_fraction": round(sum(r["partial"] for r in per_letter.values()) / max(right, 1), 4),
            "mean_probe_f1": round(float(np.mean([r["probe_f1"] for r in per_letter.values()])), 4),
            "mean_k_sparse_f1": round(float(np.mean([r["k_sparse_f1"] for r in per_letter.values()])), 4)}


def absorbing_pairs(results: dict[str, Any]) -> set[tuple[int, int]]:
    """The measured (main latent, absorbing latent) pairs of a benchmark result: the detector's ground truth."""
    return {(m, a["latent"]) for a in results["absorbing_latents"]
            for m in results["letters"][a["letter"]]["main_latents"]}


def summary(results: dict[str, Any]) -> str:
    letters = results["letters"]
    worst = sorted(letters.items(), key=lambda kv: -kv[1]["absorption_rate"])[:3]
    lines = [f"first-letter absorption over {len(letters)} letters and {results['n_words']} words: "
             f"{results['absorption_rate']:.1%} of the words the probe gets right are absorbed, "
             f"{results['partial_absorption_fraction']:.1%} partially (probe F1 {results['mean_probe_f1']:.2f}, "
             f"k-sparse latent F1 {results['mean_k_sparse_f1']:.2f})",
             "most absorbed letters: " + ", ".join(f"{l.upper()} {r['absorption_rate']:.0%}" for l, r in worst)]
    for a in results["absorbing_latents"][:5]:
        lines.append(f"  latent {a['latent']} absorbs {a['letter'].upper()} on {a['words']} words, e.g. "
                     + ", ".join(a["examples"][:4]))
    return "\n".join(lines)

