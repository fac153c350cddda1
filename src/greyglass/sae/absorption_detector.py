"""Feature absorption detected from an SAE's weights alone (no labelled data).

When a child latent c absorbs part of a parent latent p (c fires on a special case of p, and
p stays silent there), the untied weights keep a trace of it:
- c's decoder row contains p's direction: `cos(W_dec[c], W_dec[p]) > 0`;
- p's encoder was trained not to fire on c's inputs, so it responds to c's decoder direction
  far less than the decoders' overlap predicts: `e_p . d_c  <<  cos(d_c, d_p) * (e_p . d_p)`,
  with `e_p` p's unit encoder column and `d` unit decoder rows.

The score of a (parent, child) pair multiplies the two:

    score(p, c) = relu(cos(d_c, d_p)) * relu(cos(d_c, d_p) * (e_p . d_p) - e_p . d_c)

For an ordinary pair of overlapping latents (encoder ~ decoder) the second factor is ~0; for
an absorbing pair it is large. With firing rates, pairs whose parent fires less often than
the child are dropped (a parent is the more general latent). Scores are computed in blocks of
parents against all children, keeping only the best candidates, so memory stays
O(block * d_sae) for dictionaries of tens of thousands of latents.

`validate` measures the detector against the pairs a first-letter run found absorbing
(`sae.absorption`); `run_detector` is `greyglass sae absorption-weights`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from ..errors import GreyglassError
from ..records import from_json
from ..runs import check_layout, read_run, write_config, write_results
from ..stats import Estimate, auroc, mean_ci
from .config import DetectorRunConfig
from .io import load_sae, load_sparsity
from .model import SparseAutoencoder
from .results import AbsorbingPair, AbsorptionResults, DetectorResults, DetectorValidation


class AbsorptionPairs(NamedTuple):
    """The best-scoring (parent, child) pairs, strongest first."""

    parents: Tensor  # [n] latent ids
    children: Tensor  # [n] latent ids
    scores: Tensor  # [n]
    decoder_cos: Tensor  # [n] cos(W_dec[child], W_dec[parent])
    encoder_gap: Tensor  # [n] cos(d_c, d_p) * (e_p . d_p) - e_p . d_c


class UnitWeights(NamedTuple):
    dec: Tensor  # [d_sae, d_in] unit decoder rows
    enc: Tensor  # [d_sae, d_in] unit encoder columns, one per row
    self_response: Tensor  # [d_sae] e_p . d_p


def unit_weights(sae: SparseAutoencoder) -> UnitWeights:
    with torch.no_grad():
        dec = sae.W_dec.detach().float().cpu()
        dec = dec / dec.norm(dim=1, keepdim=True).clamp(min=1e-12)
        enc = sae.W_enc.detach().float().cpu().t()
        enc = enc / enc.norm(dim=1, keepdim=True).clamp(min=1e-12)
        return UnitWeights(dec, enc, (enc * dec).sum(-1))


def block_scores(w: UnitWeights, parents: Tensor, children: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Scores, decoder cosines and encoder gaps of `parents [B]` against `children` (default all): `[B, C]` each."""
    dec_c = w.dec if children is None else w.dec[children]  # [C, d_in]
    cos = w.dec[parents] @ dec_c.T  # [B, C]
    response = w.enc[parents] @ dec_c.T  # [B, C]: e_p . d_c
    gap = cos * w.self_response[parents, None] - response
    return cos.clamp(min=0) * gap.clamp(min=0), cos, gap


def pair_scores(sae: SparseAutoencoder, parents: Tensor, children: Tensor) -> Tensor:
    """Scores of the given pairs `(parents[i], children[i])`: `[n]`."""
    w = unit_weights(sae)
    cos = (w.dec[parents] * w.dec[children]).sum(-1)
    gap = cos * w.self_response[parents] - (w.enc[parents] * w.dec[children]).sum(-1)
    return cos.clamp(min=0) * gap.clamp(min=0)


def detect_absorption(sae: SparseAutoencoder, top: int = 1000, block: int = 1024,
                      log10_rates: Tensor | None = None, progress: bool = False) -> AbsorptionPairs:
    """The `top` highest-scoring (parent, child) pairs over all d_sae^2 pairs, one block of parents at a time.

    `log10_rates [d_sae]` (the saved sparsity), when given, drops pairs whose parent fires
    less often than the child.
    """
    w = unit_weights(sae)
    d_sae = w.dec.shape[0]
    empty = torch.empty(0)
    best = [empty, empty.long(), empty.long(), empty, empty]  # scores, parents, children, cos, gap
    for lo in tqdm(range(0, d_sae, block), desc="absorption pairs", disable=not progress):
        parents = torch.arange(lo, min(lo + block, d_sae))
        score, cos, gap = block_scores(w, parents)  # [B, d_sae]
        score[torch.arange(len(parents)), parents] = 0  # a latent is not its own child
        if log10_rates is not None:
            score = score * (log10_rates[parents, None] >= log10_rates[None, :])
        n = min(top, score.numel())
        vals, flat = score.flatten().topk(n)
        p, c = parents[flat // d_sae], flat % d_sae
        cand = [vals, p, c, cos.flatten()[flat], gap.flatten()[flat]]
        merged = [torch.cat([b, x]) for b, x in zip(best, cand)]
        keep = merged[0].topk(min(top, len(merged[0]))).indices
        best = [m[keep] for m in merged]
    scores, parents, children, cos, gap = best
    keep = scores > 0
    return AbsorptionPairs(parents[keep], children[keep], scores[keep], cos[keep], gap[keep])


def pair_rows(pairs: AbsorptionPairs) -> tuple[AbsorbingPair, ...]:
    return tuple(AbsorbingPair(int(p), int(c), round(float(s), 5), round(float(d), 4), round(float(g), 4))
                 for p, c, s, d, g in zip(*pairs))


def validate(sae: SparseAutoencoder, pairs: AbsorptionPairs, truth: set[tuple[int, int]],
             parents: list[int]) -> DetectorValidation:
    """The detector against measured absorption (e.g. the first-letter benchmark's pairs).

    - precision / recall of the detector's pairs against `truth` (all its pairs, and those whose
      parent is one of the measured `parents`, where the ground truth can say anything);
    - AUROC of the score over every (parent in `parents`, child) pair, truth pairs positive,
      with a 95% interval from bootstrapping the positives' placements among the negatives (the
      few measured pairs are the main source of uncertainty), and the AUROC of the decoder
      cosine alone as the baseline the encoder term has to beat.
    """
    found = set(zip(pairs.parents.tolist(), pairs.children.tolist()))
    in_scope = {p for p in found if p[0] in set(parents)}
    hits = len(found & truth)
    scores, cos, _ = block_scores(unit_weights(sae), torch.tensor(parents, dtype=torch.long))  # [P, d_sae]
    scores[torch.arange(len(parents)), torch.tensor(parents)] = 0
    labels = torch.zeros_like(scores, dtype=torch.bool)
    for row, p in enumerate(parents):
        for q, c in truth:
            if q == p:
                labels[row, c] = True
    flat, pos = scores.flatten().numpy(), labels.flatten().numpy()
    neg = np.sort(flat[~pos])
    placements = (np.searchsorted(neg, flat[pos], "left") + np.searchsorted(neg, flat[pos], "right")) / 2 / max(len(neg), 1)
    nan = float("nan")
    ci = mean_ci(placements) if len(placements) else Estimate(nan, nan, nan)
    return DetectorValidation(
        truth_pairs=len(truth), detector_pairs=len(found), hits=hits, precision=hits / max(len(found), 1),
        recall=hits / max(len(truth), 1), precision_among_measured_parents=len(in_scope & truth) / max(len(in_scope), 1),
        auroc=Estimate(auroc(flat, pos), ci.lo, ci.hi),
        # the baseline: decoder cosine alone, without the encoder's carve-out
        auroc_decoder_cos_only=auroc(cos.flatten().numpy(), pos), candidate_pairs=int(labels.numel()))


def run_detector(cfg: DetectorRunConfig, out: Path, progress: bool = True) -> DetectorResults:
    """`sae absorption-weights`: the strongest pairs of the SAE in `cfg.sae`, validated against a first-letter
    run when `cfg.ground_truth` names one; writes the run folder."""
    sae = load_sae(cfg.sae)
    rates = load_sparsity(cfg.sae) if cfg.rates else None
    truth = _ground_truth(cfg.ground_truth) if cfg.ground_truth else None
    write_config(out, "sae_absorption_weights", config=cfg)
    start = time.perf_counter()
    pairs = detect_absorption(sae, top=cfg.top, block=cfg.block, log10_rates=rates, progress=progress)
    validation = None if truth is None else validate(sae, pairs, truth.absorbing_pairs(), truth.main_latents())
    results = DetectorResults(pair_rows(pairs), rates is not None, validation, round(time.perf_counter() - start, 2))
    write_results(out, results)
    return results


def _ground_truth(folder: str) -> AbsorptionResults:
    try:
        meta, results = read_run(folder)
        if meta.get("kind") != "sae_absorption":
            raise GreyglassError(f"{folder} holds a '{meta.get('kind')}' run")
        check_layout(folder, meta, ("sae", "absorption"))
        return from_json(AbsorptionResults, results, f"{folder}/results.json")
    except GreyglassError as e:
        raise GreyglassError(f"--ground-truth takes a `greyglass sae absorption` run folder: {e}") from None
