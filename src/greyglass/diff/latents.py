"""`diff report`: what the latents of a trained crosscoder are, B-only ones first.

For every latent, the relative decoder norm (`crosscoder.relative_norms`) sorts it into A-only, B-only, shared
or other (Minder et al.'s thresholds, `config.B_ONLY_FROM`, `SHARED_WITHIN`). The described latents (B-only, or
with none the most B-leaning; likewise for A) get, from one pass of both models over held-out text:

- their firing rate and top activating contexts as each model drives them: the latent's pre-activation from one
  model's half of the encoder alone, `relu((x_m s_m - b_dec_m) @ W_enc[m] + b_enc)`, so a latent B alone drives
  shows contexts under B and none under A;
- the logit lens of their decoder row in the model they belong to (`models.lens`);
- Latent Scaling (Minder et al. 2025) for the B side: with `d` the latent's B decoder row, the least-squares scale
  `beta = sum_i f_i <d, y_i> / (|d|^2 sum_i f_i^2)` of `f d` against each model's reconstruction error with the
  latent's own contribution put back (`y = x_m - x_hat_m + f d_m`) and against the reconstruction without it
  (`y = x_hat_m - f d_m`). The ratios A/B, `nu_epsilon` and `nu_r`, are near 0 when A neither leaves the
  direction in its error nor builds it from other latents (a truly B-only latent) and near 1 for an artefact
  of the sparsity loss (Complete Shrinkage, Latent Decoupling). Intervals: a bootstrap over documents of the
  ratio of summed numerators (the denominators cancel). All in the normalised space training used.
"""

from __future__ import annotations

import heapq
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from ..activations import without_outliers
from ..data.corpus import corpus_fingerprint
from ..errors import GreyglassError
from ..models.hooks import run_to_sites
from ..models.lens import logit_lens
from ..models.loader import load_model
from ..models.lm import LoadedModel
from ..models.tokens import token_strings
from ..plots import histograms, save_svg
from ..runs import write_config, write_results
from ..stats import Estimate
from .config import (ARTEFACT_RATIO, Context, LatentReport, LatentScaling, LatentsConfig, LatentsResults,
                     parse_latent_ids)
from .dashboard import write_dashboards
from .crosscoder import Crosscoder, class_counts, crosscoder_folder, latent_classes, load_crosscoder, relative_norms
from .pair import Chunk, check_pair, paired_chunks

PLOT = "relative_decoder_norms.svg"
_CONTEXT = 8  # tokens shown before the peak (and up to 4 after)


class _Pass(NamedTuple):
    """What one pass over the text gathered for the described latents `latents [K]`."""

    fired: np.ndarray  # [K] tokens each latent fired on (joint encoder)
    top: list[list[list[tuple[float, int, list[int], int, list[float]]]]]  # [model][K] heap of (value, doc, ids, peak, values)
    numerators: np.ndarray  # [n_docs, K, 5]: error A, error B, reconstruction A, reconstruction B; |d|^2 sum f^2
    n_tokens: int
    n_documents: int
    sq_error: np.ndarray  # [2] summed squared error per model
    sq_total: np.ndarray  # [2] summed squared deviation from the mean per model (fvu's denominator)


def describe_latents(lm_a: LoadedModel, lm_b: LoadedModel, cc: Crosscoder, folder: Path, cfg: LatentsConfig,
                     out: Path, progress: bool = True) -> LatentsResults:
    """The `diff report` run: classes, contexts, logit lens and Latent Scaling of `cc`'s latents; writes the run folder."""
    check_pair(lm_a, lm_b)
    given = list(parse_latent_ids(cfg.latents))
    if any(not 0 <= k < cc.cfg.d_sae for k in given):
        raise GreyglassError(f"--latents {cfg.latents}: the crosscoder has latents 0 to {cc.cfg.d_sae - 1}")
    corpus = _corpus(cfg, cc)
    write_config(out, "diff_latents", config=cfg, model=lm_b.provenance(), model_a=lm_a.provenance(),
                 crosscoder=str(folder), crosscoder_cfg=cc.cfg, corpus_fingerprint=corpus_fingerprint(corpus))
    relative = relative_norms(cc.decoder_norms().cpu())
    classes = latent_classes(relative)
    b_side = given or _side(relative, classes, "b_only", descending=True, n=4 * cfg.n_latents)
    a_side = [] if given else _side(relative, classes, "a_only", descending=False, n=4 * cfg.n_latents)
    latents = torch.tensor(b_side + a_side, dtype=torch.long)
    gathered = _gather(lm_a, lm_b, cc, latents, cfg, corpus, progress)
    reports = _reports(lm_a, lm_b, cc, latents, gathered, relative, classes, cfg)
    b_reports = tuple(reports) if given else _most_firing(reports[:len(b_side)], cfg.n_latents)
    a_reports = _most_firing(reports[len(b_side):], cfg.n_latents)
    fired_b_only = [r for r, k in zip(reports[:len(b_side)], b_side) if classes[k] == "b_only" and r.firing_rate > 0]
    save_svg(out / PLOT, histograms({"all latents": relative.tolist()},
                                    "Relative decoder norm of each latent (0: only A writes it, 1: only B)",
                                    "relative decoder norm", bins=40))
    fvu = gathered.sq_error / np.maximum(gathered.sq_total, 1e-12)
    results = LatentsResults(
        crosscoder=str(folder), site=cc.cfg.hook_name, model_a=lm_a.spec, model_b=lm_b.spec, d_sae=cc.cfg.d_sae,
        n_tokens=gathered.n_tokens, n_documents=gathered.n_documents, counts=class_counts(classes),
        fvu_a=round(float(fvu[0]), 6), fvu_b=round(float(fvu[1]), 6), n_b_only_fired=len(fired_b_only),
        n_genuine_b_only=sum(bool(r.genuine) for r in fired_b_only), b_latents=b_reports, a_latents=a_reports,
        plot=PLOT)
    write_results(out, results)
    write_dashboards(results, out)
    return results


def run_report(cfg: LatentsConfig, out: Path, progress: bool = True) -> LatentsResults:
    """`diff report` from its config: load the crosscoder and the two models it names (or --model-a/--model-b)."""
    folder = crosscoder_folder(cfg.crosscoder)
    cc = load_crosscoder(folder, device=cfg.device)
    lm_a = load_model(cfg.model_a or cc.cfg.model_a, dtype=cfg.dtype, device=cfg.device)
    lm_b = load_model(cfg.model_b or cc.cfg.model_b, dtype=cfg.dtype, device=cfg.device)
    return describe_latents(lm_a, lm_b, cc, folder, cfg, out, progress)


def _corpus(cfg: LatentsConfig, cc: Crosscoder):
    """The text, cut into windows of the length the crosscoder was trained on."""
    return replace(cfg.corpus, context_size=cc.cfg.context_size)


def _side(relative: torch.Tensor, classes: list[str], kind: str, descending: bool, n: int) -> list[int]:
    """The latents of class `kind`, or with none of them the `n` latents leaning furthest that way (only latents
    that do lean: a latent both models write equally, as every latent of identical models, is on neither side)."""
    members = [i for i, c in enumerate(classes) if c == kind]
    if members:
        return members
    leaning = relative > 0.5 if descending else relative < 0.5
    order = [i for i in relative.argsort(descending=descending).tolist() if leaning[i]]
    return order[:n]


def _most_firing(reports: list[LatentReport], n: int) -> tuple[LatentReport, ...]:
    return tuple(sorted(reports, key=lambda r: (-r.firing_rate, r.latent))[:n])


def _gather(lm_a: LoadedModel, lm_b: LoadedModel, cc: Crosscoder, latents: torch.Tensor, cfg: LatentsConfig,
            corpus, progress: bool) -> _Pass:
    site = lm_a.site(cc.cfg.hook_name).name
    K = len(latents)
    fired = np.zeros(K)
    top: list[list[list]] = [[[] for _ in range(K)] for _ in range(2)]
    per_doc: dict[int, np.ndarray] = {}
    seen: set[int] = set()
    sq_error, sq_sum, sums, count = np.zeros(2), np.zeros(2), torch.zeros(2, cc.cfg.d_in), 0
    d_b = cc.W_dec.detach()[latents, 1]  # [K, d] each latent's B decoder row (normalised space)
    own = torch.stack([(d_b * cc.W_dec.detach()[latents, m]).sum(-1) for m in range(2)])  # [2, K] <d, d_m>
    bar = tqdm(total=cfg.n_tokens, unit="tok", desc="describe latents", disable=not progress)
    with torch.inference_mode():
        for chunk in paired_chunks(lm_a, corpus, cfg.n_tokens, cfg.batch_windows):
            x = _paired_acts(lm_a, lm_b, site, chunk, cc)  # [B, T, 2, d]
            chunk = chunk._replace(mask=without_outliers(x.unbind(2), chunk.mask.to(x.device)).cpu())  # as in training
            B, T = chunk.ids.shape
            flat = x.reshape(B * T, 2, -1)
            f = cc.encode(flat) * chunk.mask.reshape(-1, 1).to(flat.device)  # [B*T, d_sae]
            xn = cc._normalised(flat).view(B * T, 2, -1)
            recon_n = cc.decode(f) * cc.scales[:, None]  # [B*T, 2, d] normalised
            keep = chunk.mask.reshape(-1).to(flat.device)
            err = (xn - recon_n)[keep]
            sq_error += err.pow(2).sum((0, 2)).cpu().numpy()
            sums += xn[keep].sum(0).cpu()
            sq_sum += xn[keep].pow(2).sum((0, 2)).cpu().numpy()
            count += int(keep.sum())
            seen.update(chunk.docs[chunk.mask].tolist())
            fk = f[:, latents]  # [B*T, K]
            fired += (fk > 0).sum(0).cpu().numpy()
            _scaling_sums(fk, xn - recon_n, recon_n, d_b, own, chunk.docs.reshape(-1), per_doc)
            for m in range(2):
                _keep_top(top[m], _model_alone(cc, flat, m)[:, latents].reshape(B, T, K) * chunk.mask[..., None],
                          chunk, cfg.n_contexts)
            bar.update(int(chunk.mask.sum()))
    bar.close()
    mean_sq = (sums.pow(2).sum(-1) / max(count, 1)).numpy()
    # every document read is a bootstrap unit, also those where no described latent fired (rows of zeros)
    numerators = np.stack([per_doc.get(d, np.zeros((K, 5))) for d in sorted(seen)]) if seen else np.zeros((0, K, 5))
    return _Pass(fired, top, numerators, count, len(seen), sq_error, sq_sum - mean_sq)


def _paired_acts(lm_a: LoadedModel, lm_b: LoadedModel, site: str, chunk: Chunk, cc: Crosscoder) -> torch.Tensor:
    acts = [run_to_sites(lm, chunk.ids.to(lm.device), [site])[site].float().to(cc.W_dec.device) for lm in (lm_a, lm_b)]
    return torch.stack(acts, dim=2)  # [B, T, 2, d]


def _model_alone(cc: Crosscoder, x: torch.Tensor, m: int) -> torch.Tensor:
    """`[N, d_sae]`: each latent's pre-activation from model m's half of the encoder alone (relu'd)."""
    xn = cc._normalised(x).view(len(x), 2, -1)[:, m] - cc.b_dec[m]
    return torch.relu(xn @ cc.W_enc[m] + cc.b_enc)


def _scaling_sums(fk: torch.Tensor, err: torch.Tensor, recon: torch.Tensor, d_b: torch.Tensor, own: torch.Tensor,
                  docs: torch.Tensor, per_doc: dict[int, np.ndarray]) -> None:
    """Add each document's Latent Scaling sums: `sum_i f_i <d, y_i>` for error A, error B, reconstruction A, B,
    and the denominator `|d|^2 sum_i f_i^2`."""
    parts = []
    for target in (err, recon):
        for m in range(2):
            proj = target[:, m] @ d_b.T  # [N, K] <d, y> before putting back / taking out the latent's own part
            sign = 1.0 if target is err else -1.0
            parts.append(fk * (proj + sign * fk * own[m]))
    parts.append(fk.pow(2) * d_b.pow(2).sum(-1))  # the denominator |d|^2 f^2
    contrib = torch.stack(parts, dim=-1).cpu().numpy()  # [N, K, 5]
    docs_np = docs.numpy()
    for doc in np.unique(docs_np[(fk > 0).any(-1).cpu().numpy()]):
        rows = docs_np == doc
        per_doc[int(doc)] = per_doc.get(int(doc), 0) + contrib[rows].sum(0)


def _keep_top(heaps: list[list], values: torch.Tensor, chunk: Chunk, n: int) -> None:
    """Keep each latent's `n` highest activations `values [B, T, K]` with their window and position."""
    best = values.amax(dim=1)  # [B, K] one context per window: its peak
    where = values.argmax(dim=1)
    for b, k in (best > 0).nonzero().tolist():
        item = (float(best[b, k]), int(chunk.docs[b, where[b, k]]), chunk.ids[b].tolist(), int(where[b, k]),
                values[b, :, k].tolist())
        if len(heaps[k]) < n:
            heapq.heappush(heaps[k], item)
        elif item[0] > heaps[k][0][0]:
            heapq.heapreplace(heaps[k], item)


def _ratio(numerators: np.ndarray, top: int, bottom: int, n: int, seed: int = 0) -> Estimate:
    """sum(numerators[:, top]) / sum(numerators[:, bottom]) with a bootstrap over documents (rows)."""
    value = numerators[:, top].sum() / numerators[:, bottom].sum()
    if len(numerators) < 2:
        return Estimate(float(value), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(numerators), np.full(len(numerators), 1 / len(numerators)), size=n)  # [n, docs]
    with np.errstate(divide="ignore", invalid="ignore"):  # a resample without the latent's documents has no ratio
        draws = (counts @ numerators[:, top]) / (counts @ numerators[:, bottom])
    lo, hi = np.nanpercentile(draws, [2.5, 97.5])
    if hi - lo <= 1e-6:  # every resample alike (A and B identical): no spread to estimate, so no interval
        return Estimate(float(value), float("nan"), float("nan"))
    return Estimate(float(value), float(lo), float(hi))


def _reports(lm_a: LoadedModel, lm_b: LoadedModel, cc: Crosscoder, latents: torch.Tensor, gathered: _Pass,
             relative: torch.Tensor, classes: list[str], cfg: LatentsConfig) -> list[LatentReport]:
    W = cc.W_dec.detach().cpu()
    cosine = torch.nn.functional.cosine_similarity(W[:, 0], W[:, 1], dim=-1)
    out = []
    lens_rows = torch.stack([W[k, 1] / cc.scales[1].cpu() if relative[k] >= 0.5 else W[k, 0] / cc.scales[0].cpu()
                             for k in latents.tolist()]) if len(latents) else torch.zeros(0, cc.cfg.d_in)
    lens_b = logit_lens(lm_b, lens_rows, n=8) if len(latents) else None
    lens_a = logit_lens(lm_a, lens_rows, n=8) if len(latents) else None
    vocab = token_strings(lm_b.tokenizer, [i for heaps in gathered.top for h in heaps for item in h for i in item[2]]
                          + (torch.cat([lens_b.promoted, lens_b.suppressed, lens_a.promoted, lens_a.suppressed]).flatten().tolist()
                             if lens_b is not None else []))
    for j, k in enumerate(latents.tolist()):
        b_side = relative[k] >= 0.5
        lens = lens_b if b_side else lens_a
        scaling = _scaling(gathered.numerators[:, j], cfg.n_bootstrap) if b_side and gathered.fired[j] > 1 else None
        genuine = None
        if scaling is not None and classes[k] == "b_only":
            genuine = bool(scaling.error_ratio.hi < ARTEFACT_RATIO and scaling.reconstruction_ratio.hi < ARTEFACT_RATIO)
        out.append(LatentReport(
            latent=k, kind=classes[k], relative_norm=round(float(relative[k]), 4), cosine=round(float(cosine[k]), 4),
            firing_rate=float(gathered.fired[j] / max(gathered.n_tokens, 1)),
            contexts_a=_contexts(gathered.top[0][j], vocab), contexts_b=_contexts(gathered.top[1][j], vocab),
            promoted=tuple(vocab[i] for i in lens.promoted[j].tolist()),
            suppressed=tuple(vocab[i] for i in lens.suppressed[j].tolist()), scaling=scaling, genuine=genuine))
    return out


def _scaling(numerators: np.ndarray, n: int) -> LatentScaling | None:
    """The four betas and the two ratios (the shared denominator cancels in them)."""
    totals = numerators.sum(0)  # [5]
    if totals[1] == 0 or totals[3] == 0 or totals[4] == 0:
        return None
    beta = totals[:4] / totals[4]
    return LatentScaling(beta_error_a=float(beta[0]), beta_error_b=float(beta[1]),
                         beta_reconstruction_a=float(beta[2]), beta_reconstruction_b=float(beta[3]),
                         error_ratio=_ratio(numerators, 0, 1, n), reconstruction_ratio=_ratio(numerators, 2, 3, n))


def _contexts(heap: list, vocab: dict[int, str]) -> tuple[Context, ...]:
    out = []
    for value, doc, ids, peak, values in sorted(heap, key=lambda item: item[:4], reverse=True):
        lo, hi = max(1, peak - _CONTEXT), min(len(ids), peak + 4)
        out.append(Context(document=doc, tokens=tuple(vocab[i] for i in ids[lo:hi]), peak=peak - lo,
                           value=round(value, 4), activations=tuple(round(v, 4) for v in values[lo:hi])))
    return tuple(out)
