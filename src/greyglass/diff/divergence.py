"""`diff divergence`: the cheap first look. Where do two models with one tokenizer part ways on ordinary text?

Both models read the same windows. Per layer, `|x_B - x_A| / |x_A|` of the residual stream (resid_post) and
the cosine of the two; at the output, the per-token KL divergence between the next-token distributions (both
ways) and how often the top tokens agree. Every number is a mean over tokens with a 95% interval from a
bootstrap over documents (tokens of one document are not independent). Each window's first position (BOS or
attention sink) is left out, as everywhere else in greyglass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data.corpus import corpus_fingerprint
from ..models.hooks import capturing
from ..models.lm import LoadedModel
from ..plots import Series, line_chart, save_svg
from ..runs import write_config, write_results
from ..stats import Estimate, mean_ci, proportion_ci
from .config import DivergenceConfig, DivergenceResults, LayerDivergence
from .pair import check_pair, paired_chunks

PLOT = "divergence_by_layer.svg"


def _forward(lm: LoadedModel, ids: torch.Tensor, sites: list[str]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Every site's activations `[B, T, d]` and the log-probabilities `[B, T, vocab]` of one full forward pass."""
    with torch.inference_mode(), capturing(lm, sites) as acts:
        logits = lm.model(input_ids=ids.to(lm.device), use_cache=False).logits
    return {s: a.float() for s, a in acts.items()}, F.log_softmax(logits.float(), dim=-1)


def _mean(values: np.ndarray, docs: np.ndarray, n: int) -> Estimate:
    """Mean over tokens, bootstrap interval over documents; values equal up to float rounding (identical models:
    a cosine of 1 computes as 1 or 1 - 6e-8) and a single document get no interval rather than a zero-width one
    (there is no spread to estimate)."""
    if np.ptp(values) <= 1e-6 or len(np.unique(docs)) < 2:
        return Estimate(float(values[0]), float("nan"), float("nan"))
    return mean_ci(values, groups=docs, n=n)


def divergence(lm_a: LoadedModel, lm_b: LoadedModel, cfg: DivergenceConfig, out: Path,
               progress: bool = True) -> DivergenceResults:
    """Compare `lm_a` and `lm_b` layer by layer and at the output over `cfg.corpus`; write the run folder."""
    check_pair(lm_a, lm_b, same_depth=True)
    write_config(out, "diff_divergence", config=cfg, model=lm_b.provenance(), model_a=lm_a.provenance(),
                 corpus_fingerprint=corpus_fingerprint(cfg.corpus))
    layers = sorted({*range(0, lm_a.n_layers, cfg.layer_step), lm_a.n_layers - 1})
    sites = [f"blocks.{layer}.hook_resid_post" for layer in layers]
    rel: list[np.ndarray] = []  # per chunk [L, n]
    cos: list[np.ndarray] = []
    kl_ab, kl_ba, agree, docs = [], [], [], []
    bar = tqdm(total=cfg.n_tokens, unit="tok", desc="divergence", disable=not progress)
    for chunk in paired_chunks(lm_a, cfg.corpus, cfg.n_tokens, cfg.batch_windows):
        acts_a, logp_a = _forward(lm_a, chunk.ids, sites)
        acts_b, logp_b = _forward(lm_b, chunk.ids, sites)
        keep = chunk.mask.to(logp_a.device)
        xa = torch.stack([acts_a[s][keep] for s in sites])  # [L, n, d]
        xb = torch.stack([acts_b[s][keep] for s in sites])
        rel.append(((xb - xa).norm(dim=-1) / xa.norm(dim=-1).clamp(min=1e-12)).cpu().numpy())
        cos.append(F.cosine_similarity(xa, xb, dim=-1).cpu().numpy())
        la, lb = logp_a[keep], logp_b[keep]  # [n, vocab]
        kl_ab.append((la.exp() * (la - lb)).sum(-1).clamp(min=0).cpu().numpy())
        kl_ba.append((lb.exp() * (lb - la)).sum(-1).clamp(min=0).cpu().numpy())
        agree.append((la.argmax(-1) == lb.argmax(-1)).float().cpu().numpy())
        docs.append(chunk.docs[chunk.mask].numpy())
        bar.update(int(chunk.mask.sum()))
    bar.close()
    doc = np.concatenate(docs)
    rel_all, cos_all = np.concatenate(rel, axis=1), np.concatenate(cos, axis=1)
    n = cfg.n_bootstrap
    rows = tuple(LayerDivergence(layer, site, _mean(rel_all[i], doc, n), _mean(cos_all[i], doc, n))
                 for i, (layer, site) in enumerate(zip(layers, sites)))
    save_svg(out / PLOT, line_chart(
        [Series("|x_B - x_A| / |x_A|", layers, [r.relative_difference.value for r in rows],
                [_or(r.relative_difference.lo, r.relative_difference.value) for r in rows],
                [_or(r.relative_difference.hi, r.relative_difference.value) for r in rows])],
        "How far model B's residual stream is from model A's", "layer", "relative difference (mean over tokens)"))
    results = DivergenceResults(
        model_a=lm_a.spec, model_b=lm_b.spec, n_tokens=len(doc), n_documents=len(np.unique(doc)), layers=rows,
        kl=_mean(np.concatenate(kl_ab), doc, n), kl_b_a=_mean(np.concatenate(kl_ba), doc, n),
        top1_agreement=proportion_ci(np.concatenate(agree), groups=doc, n=n),
        most_divergent_layer=max(rows, key=lambda r: r.relative_difference.value).layer, plot=PLOT)
    write_results(out, results)
    return results


def _or(bound: float, value: float) -> float:
    """An interval edge for the plot band; the value itself where there is no interval."""
    return value if bound != bound else bound
