"""The metrics of an SAE on held-out text: reconstruction, sparsity, and the model's loss with it spliced in.

For each batch of evaluation windows the model runs four times:
- clean, capturing the site's activations `x [B, T, d]` (and the clean logits);
- with the SAE's reconstruction `x_hat` in place of `x` at the site (via `models.replacing`);
- with zeros in place of `x` (zero ablation);
- with the site's mean activation over the evaluated tokens in place of `x` (mean ablation; one
  early-stopped pass over the same windows measures that mean first).
Each window's first position (BOS, or the attention-sink token where there is none) is left
untouched in every intervention: the SAE is not trained on it (stores and on-the-fly training
drop it) and its activations are outliers that dominate the error. For the same reason the
prediction made at that position (of the second token) is left out of the losses: it depends on
the first position alone, so it is the same in all four runs and would only dilute the differences.
Outlier rows elsewhere (`activations.without_outliers`) are left untouched and out of the losses
too, as training leaves them out.

The headline is the loss increase: CE_sae - CE_clean in nats per token, with a 95% interval from
a cluster bootstrap over windows, and KL(clean || spliced). CE-loss recovered,
(CE_abl - CE_sae) / (CE_abl - CE_clean), is reported against both ablations: zeroing a mid-depth
residual stream wrecks the model, so against zero ablation almost any SAE "recovers" 90%+;
mean ablation is the stricter baseline.

The text is called held out only when `heldout` (from `sae.heldout.heldout_status`) proves it
disjoint from the SAE's training documents; the metrics say which (`SAEMetrics.heldout`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from ..activations import model_windows, take_tokens
from ..data.corpus import CorpusConfig, corpus_fingerprint
from ..errors import GreyglassError
from ..models.hooks import capturing, replacing
from ..models.lm import LoadedModel
from ..runs import write_config, write_results
from ..stats import mean_ci
from .config import MetricsConfig, MetricsRunConfig
from .heldout import TRAINING_TEXT, heldout_status
from .io import load_sae, read_training, saelens_encoder
from .model import SparseAutoencoder
from .results import DENSE_RATE, DensityHistogram, HeldOut, MetricsResults, SAEMetrics

HIST_EDGES = [x / 2 for x in range(-16, 1)]  # log10 firing rate, -8 .. 0 in half decades
ABLATIONS = ("zero", "mean")
"""What replaces the site's activations for the CE-recovered baselines."""


class _Sums:
    """Running sums over tokens and per-prediction losses, turned into metrics at the end."""

    def __init__(self, d_in: int, d_sae: int):
        self.n = 0
        self.sse = 0.0
        self.sum_x = torch.zeros(d_in, dtype=torch.float64)
        self.sum_x2 = 0.0
        self.cosine = self.l0 = self.l1 = self.shrink = 0.0
        self.fires = torch.zeros(d_sae, dtype=torch.long)
        self.nll: dict[str, list[Tensor]] = {name: [] for name in ("clean", "sae", *ABLATIONS)}  # [n_pred] each
        self.kl: dict[str, list[Tensor]] = {name: [] for name in ("sae", *ABLATIONS)}
        self.window: list[Tensor] = []  # [n_pred]: the window each prediction is in, the bootstrap's cluster

    def add_activations(self, x: Tensor, latents: Tensor, x_hat: Tensor) -> None:  # [n, d], [n, d_sae], [n, d]
        x, x_hat = x.double(), x_hat.double()
        self.n += len(x)
        self.sse += (x_hat - x).pow(2).sum().item()
        self.sum_x += x.sum(0).cpu()
        self.sum_x2 += x.pow(2).sum().item()
        self.cosine += F.cosine_similarity(x, x_hat, dim=-1).sum().item()
        self.shrink += (x_hat.norm(dim=-1) / x.norm(dim=-1).clamp(min=1e-12)).sum().item()
        active = latents > 0
        self.l0 += active.sum().item()
        self.l1 += latents.abs().sum().item()
        self.fires += active.sum(0).cpu()

    def add_clean(self, logp: Tensor, target: Tensor, window: Tensor) -> None:  # [n_pred, V], [n_pred] x2
        self.nll["clean"].append(F.nll_loss(logp, target, reduction="none").cpu())
        self.window.append(window.cpu())

    def add_spliced(self, name: str, logp: Tensor, clean: Tensor, target: Tensor) -> None:  # [n_pred, V] x2, [n_pred]
        self.nll[name].append(F.nll_loss(logp, target, reduction="none").cpu())
        self.kl[name].append(F.kl_div(logp, clean, log_target=True, reduction="none").sum(-1).cpu())

    def metrics(self, site: str, heldout: HeldOut) -> SAEMetrics:
        n, d = self.n, len(self.sum_x)
        total_var = self.sum_x2 - (self.sum_x.pow(2).sum() / n).item()
        fvu = self.sse / total_var
        rate = self.fires.double() / n
        log_rate = torch.log10(rate[rate > 0])
        hist = torch.histogram(log_rate.float(), bins=torch.tensor(HIST_EDGES)).hist if len(log_rate) else torch.zeros(16)
        nll = {k: torch.cat(v).double() for k, v in self.nll.items()}
        kl = {k: torch.cat(v).double() for k, v in self.kl.items()}
        windows = torch.cat(self.window).numpy()
        ce = {k: v.mean().item() for k, v in nll.items()}
        increase = mean_ci((nll["sae"] - nll["clean"]).numpy(), groups=windows)
        return SAEMetrics(
            site=site, d_sae=len(self.fires), n_tokens=n, n_predictions=len(windows), heldout=heldout,
            ce_increase=increase, kl_sae=mean_ci(kl["sae"].numpy(), groups=windows),
            perplexity_ratio=math.exp(increase.value),
            ce_clean=ce["clean"], ce_sae=ce["sae"], ce_zero=ce["zero"], ce_mean=ce["mean"],
            kl_zero=kl["zero"].mean().item(), kl_mean=kl["mean"].mean().item(),
            ce_loss_recovered_mean=_recovered(ce, "mean"), ce_loss_recovered=_recovered(ce, "zero"),
            mse=self.sse / (n * d), fvu=fvu, explained_variance=1 - fvu, cosine=self.cosine / n, l0=self.l0 / n,
            l1=self.l1 / n, dead_fraction=(rate == 0).double().mean().item(),
            dense_fraction=(rate > DENSE_RATE).double().mean().item(), shrinkage=self.shrink / n,
            density_histogram=DensityHistogram(tuple(HIST_EDGES), tuple(int(c) for c in hist.tolist()),
                                               int((rate == 0).sum())))


def _recovered(ce: dict[str, float], ablation: str) -> float:
    """(CE_ablation - CE_sae) / (CE_ablation - CE_clean): the share of the ablation's damage the SAE avoids."""
    lost = ce[ablation] - ce["clean"]
    return (ce[ablation] - ce["sae"]) / lost if lost != 0 else math.nan


def evaluate(sae: SparseAutoencoder, lm: LoadedModel, cfg: MetricsConfig = MetricsConfig(),
             corpus: CorpusConfig | None = None, site: str | None = None, progress: bool = True,
             heldout: HeldOut | None = None) -> SAEMetrics:
    """All the metrics in the module docstring, over at least `cfg.tokens` tokens of `corpus`.

    `heldout` is `sae.heldout.heldout_status(...)` for this SAE and corpus; without it the results
    record that the text was not shown to be held out."""
    site_name = lm.site(site or sae.cfg.hook_name).name
    sae.check_site(lm.d_model, f"{lm.name} at {site_name}")
    sae = sae.to(lm.device).eval()
    corpus = corpus or CorpusConfig(split="heldout", context_size=sae.cfg.context_size)
    batches, mean = _eval_windows(lm, site_name, corpus, cfg)
    sums = _Sums(sae.cfg.d_in, sae.cfg.d_sae)
    bar = tqdm(total=cfg.tokens, unit="tok", unit_scale=True, desc="eval SAE", disable=not progress)
    with torch.inference_mode():
        for i, (ids, keep) in enumerate(batches):  # every batch but the last holds batch_windows windows
            _add_batch(sums, sae, lm, site_name, mean, ids.to(lm.device), keep.to(lm.device), i * cfg.batch_windows)
            bar.update(int(keep.sum()))
    bar.close()
    return sums.metrics(site_name, heldout or HeldOut(False, reason="no record of the SAE's training text was checked"))


def _add_batch(sums: _Sums, sae: SparseAutoencoder, lm: LoadedModel, site: str, mean: Tensor, ids: Tensor,
               keep: Tensor, first_window: int) -> None:
    """One batch of windows `ids [B, T]`: the clean run, then the SAE, zeros and the mean spliced in at `keep`."""
    with capturing(lm, [site]) as acts:
        clean = lm.model(input_ids=ids, use_cache=False).logits
    x = acts[site]  # [B, T, d]
    latents = sae.encode(x[keep])  # [n, d_sae]
    x_hat = sae.decode(latents).to(x.dtype)  # [n, d]
    sums.add_activations(x[keep], latents, x_hat)
    predicts = keep[:, :-1]  # [B, T-1]: predictions made at kept positions (not the sink's)
    target = ids[:, 1:][predicts]  # [n_pred]
    window = (first_window + torch.arange(len(ids), device=ids.device))[:, None].expand_as(predicts)[predicts]
    clean_logp = _log_probs(clean, predicts)
    sums.add_clean(clean_logp, target, window)
    replacements = {"sae": x_hat, "zero": torch.zeros_like(x_hat), "mean": mean.to(x.dtype).expand_as(x_hat)}
    for name, rows in replacements.items():
        sums.add_spliced(name, _log_probs(_splice(lm, ids, site, keep, rows), predicts), clean_logp, target)


def _eval_windows(lm: LoadedModel, site: str, corpus: CorpusConfig,
                  cfg: MetricsConfig) -> tuple[list[tuple[Tensor, Tensor]], Tensor]:
    """The (ids [B, T], keep [B, T]) batches of windows holding at least `cfg.tokens` kept positions, and the
    site's mean activation [d] over those positions (from the same early-stopped passes)."""
    batches, total, n = [], torch.zeros((), dtype=torch.float64), 0
    for w in take_tokens(model_windows(lm, [site], corpus, cfg.batch_windows), cfg.tokens):
        x = w.acts[site][w.mask].double()  # [n, d]
        total, n = total + x.sum(0), n + len(x)
        batches.append((w.tokens, w.mask))
    if not batches:
        raise GreyglassError(f"the evaluation corpus ({corpus.corpus or 'bundled'}, split {corpus.split}) gave no window "
                             f"of {corpus.context_size} tokens; give a larger --corpus or a smaller --context-size")
    return batches, (total / n).to(lm.device)


def _log_probs(logits: Tensor, predicts: Tensor) -> Tensor:
    """Next-token log-probabilities [n_pred, V] at the predicting positions `predicts [B, T-1]`."""
    return F.log_softmax(logits[:, :-1][predicts].float(), -1)


def _splice(lm: LoadedModel, ids: Tensor, site: str, keep: Tensor, rows: Tensor) -> Tensor:
    """Logits with the site's kept positions (all but each window's first and the outlier rows) replaced by
    `rows [n, d]`."""

    def replace(x: Tensor) -> Tensor:
        out = x.clone()
        out[keep] = rows
        return out

    with replacing(lm, {site: replace}):
        return lm.model(input_ids=ids, use_cache=False).logits


def run_eval(lm: LoadedModel | None, cfg: MetricsRunConfig, out: Path, progress: bool = True) -> MetricsResults:
    """`sae eval`: check the text is held out (or that --unverified-text allows it), evaluate, write the run folder.
    Without `lm` the model is the one `cfg.model` names, by default the SAE's own."""
    sae = load_sae(cfg.sae)
    corpus = cfg.eval_corpus(sae.cfg.context_size)
    trained_on = read_training(cfg.sae).get("provenance", {}).get(TRAINING_TEXT)
    heldout = heldout_status(trained_on, corpus, cfg.sae, allow_unverified=cfg.unverified_text)
    lm = lm if lm is not None else cfg.model.load(sae.cfg.model_name)
    write_config(out, "sae_eval", model=lm.provenance(), config=cfg, corpus=corpus,
                 corpus_fingerprint=corpus_fingerprint(corpus))
    start = time.perf_counter()
    metrics = evaluate(sae, lm, cfg.eval, corpus, site=cfg.site, progress=progress, heldout=heldout)
    plain = saelens_encoder(sae)  # SAELens computes another encoder from this folder: that is measured too
    saelens = None if plain is None else evaluate(plain, lm, cfg.eval, corpus, site=cfg.site, progress=progress,
                                                  heldout=heldout)
    results = MetricsResults(metrics, saelens, round(time.perf_counter() - start, 2))
    write_results(out, results)
    return results
