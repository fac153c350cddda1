"""Threshold calibration: shift a thresholded SAE's thresholds so that its L0 on given rows is a chosen value.

BatchTopK and Matryoshka SAEs fire at inference above a threshold learned as a running average of the
smallest score kept in training (SAELens; Bussmann et al. 2024), and a JumpReLU lands only as near its
target L0 as its penalty pulls it. In short runs both miss: a BatchTopK with k 64 fires 53 latents per
token after 400 steps. Comparing architectures "at matched L0" then compares different sparsities.

Calibration adds one shift to every latent's threshold, chosen so that the mean L0 on the rows
given is the target: the rule stays `pre_i > threshold_i` (thresholds kept >= 0), so the SAE is
still a JumpReLU that SAELens reads. It is a variant, not the published inference rule: a
calibrated SAE's `training.json` says so (`calibration`). `sae compare --calibrate` saves it next to
the trained one (`<folder>-calibrated`); `sae calibrate` (`run_calibrate`) does one folder.

The rows come from the held-out split, after the windows evaluation reads (`calibration_rows`), not
from the training text: the train split's first windows are the documents training read, and there
an SAE fires fewer latents than on new text (a width-18,432 BatchTopK calibrated to L0 16 on them
fired 17.2-17.9 on held-out text), so an L0 matched on training text overshoots where it is measured.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from ..activations import model_windows, take_tokens
from ..data.corpus import CorpusConfig, corpus_fingerprint
from ..errors import GreyglassError
from ..models.lm import LoadedModel
from ..runs import write_config, write_results
from .architectures import JumpReLUSAE, batch_cut, thresholded
from .config import CalibrateRunConfig, MetricsConfig, SAEConfig
from .io import load_sae, read_training, save_sae, trained_config
from .model import SparseAutoencoder
from .results import CalibrateResults, Calibration
from .train import windows_per_forward

CALIBRATED_SUFFIX = "-calibrated"


class Calibrated(NamedTuple):
    sae: JumpReLUSAE
    calibration: Calibration
    log10_density: Tensor  # [d_sae] each latent's firing rate on the calibration rows, as sparsity.safetensors holds


def calibrate_l0(sae: SparseAutoencoder, x: Tensor, target_l0: float, first_window: int | None = None) -> Calibrated:
    """The SAE as a JumpReLU (its inference form) with every threshold shifted by one amount, so that
    its mean L0 on the rows `x [N, d_in]` is `target_l0` (to one firing in N, short of ties).
    `first_window` (recorded only) is where in the held-out split the rows begin."""
    flat = thresholded_form(sae)
    x = x.to(flat.W_enc.device)
    with torch.no_grad():
        pre = flat.pre_activations(x)  # [N, d_sae]
        before = float(_fires(pre, flat.threshold).sum(-1).float().mean())
        # a latent fires iff pre > max(threshold + shift, 0), i.e. iff its margin pre - threshold is above
        # the shift and pre > 0; so the shift is the cut that leaves target * N margins above it
        margins = (pre - flat.threshold).masked_fill_(pre <= 0, -torch.inf)  # [N, d_sae]
        n_keep = round(target_l0 * len(x))
        positive = int((pre > 0).sum())
        if not 0 < n_keep < positive:
            raise GreyglassError(f"target L0 {target_l0:g} is out of reach on these {len(x)} rows: at most "
                                 f"{positive / len(x):.1f} latents per token have a positive pre-activation")
        shift = float(batch_cut(margins, n_keep + 1))  # n_keep margins lie above the (n_keep + 1)-th largest
        flat.threshold.copy_((flat.threshold + shift).clamp(min=0.0))
        fires = _fires(pre, flat.threshold)  # [N, d_sae]
        after = float(fires.sum(-1).float().mean())
        density = torch.log10(fires.float().mean(0).clamp(min=1e-10))
    return Calibrated(flat.eval(), Calibration(target_l0, shift, before, after, len(x), first_window), density)


def thresholded_form(sae: SparseAutoencoder) -> JumpReLUSAE:
    """The SAE's inference form (`folded`), which must be a JumpReLU (BatchTopK and Matryoshka fold to one)."""
    flat = sae.folded()
    if not isinstance(flat, JumpReLUSAE):
        raise GreyglassError(f"a {sae.cfg.architecture} SAE has no threshold to calibrate (TopK fires exactly k "
                             "latents per token); calibration applies to batchtopk, matryoshka and jumprelu")
    return flat


def calibration_target(cfg: SAEConfig) -> float | None:
    """The L0 an SAE of `cfg` is calibrated to: k for BatchTopK and Matryoshka, the target of a targeted
    JumpReLU; None when there is nothing to calibrate (TopK, ReLU, an untargeted JumpReLU)."""
    if cfg.architecture in ("batchtopk", "matryoshka"):
        return float(cfg.arch.k)
    return cfg.arch.target_l0 if cfg.architecture == "jumprelu" else None


def _fires(pre: Tensor, threshold: Tensor) -> Tensor:
    return thresholded(pre, threshold) > 0


def save_calibrated(calibrated: Calibrated, trained_folder: Path, folder: Path | None = None) -> Path:
    """Save the calibrated SAE to `folder` (default: next to the trained one, `<folder>-calibrated`), its
    `training.json` holding the trained SAE's config and training record, what calibration did, and
    where the SAE came from."""
    record = {k: v for k, v in read_training(trained_folder).items() if k not in ("format", "version")}
    # a folder calibrated before keeps the config of the SAE that was trained, not of its calibrated form
    record["trained_sae"] = record.pop("trained_sae", None) or record.pop("sae", None)
    record |= {"calibrated_from": str(trained_folder), "calibration": asdict(calibrated.calibration)}
    folder = folder or trained_folder.with_name(trained_folder.name + CALIBRATED_SUFFIX)
    return save_sae(calibrated.sae, folder, sparsity=calibrated.log10_density, training=record)


def run_calibrate(lm: LoadedModel | None, cfg: CalibrateRunConfig, out: Path) -> CalibrateResults:
    """`sae calibrate`: calibrate the SAE folder `cfg.sae` to `cfg.l0` (default: its own target) on held-out
    text after what `sae eval` reads, and write the run folder with the calibrated SAE in it (`<name>-calibrated`)."""
    folder = Path(cfg.sae)
    sae = load_sae(folder)
    thresholded_form(sae)  # before loading the model: a TopK stops here
    trained = trained_config(folder, "trained_sae") or trained_config(folder)
    target = cfg.l0 or (calibration_target(trained) if trained is not None else None)
    if target is None:
        raise GreyglassError(f"{folder}: its training.json records no target L0 (a BatchTopK's k or a JumpReLU's "
                             "target_l0); pass --l0")
    lm = lm if lm is not None else cfg.model.load(sae.cfg.model_name)
    sae.check_site(lm.d_model, lm.name)
    corpus = cfg.calibration_corpus(sae.cfg.context_size)
    rows = calibration_rows(lm, lm.site(sae.cfg.hook_name).name, corpus, cfg.tokens,
                            MetricsConfig(tokens=cfg.eval_tokens))  # a split too small stops here, before any file
    write_config(out, "sae_calibrate", model=lm.provenance(), config=cfg, corpus=corpus,
                 corpus_fingerprint=corpus_fingerprint(corpus))
    calibrated = calibrate_l0(sae, rows.x, target, rows.first_window)
    saved = save_calibrated(calibrated, folder, out / (folder.name + CALIBRATED_SUFFIX))
    results = CalibrateResults(calibrated.calibration, saved.name, str(folder))
    write_results(out, results)
    return results


class CalibrationRows(NamedTuple):
    x: Tensor  # [n, d_model]
    first_window: int  # of the held-out split; the windows before it are evaluation's


def calibration_rows(lm: LoadedModel, site: str, heldout: CorpusConfig, tokens: int,
                     evaluation: MetricsConfig) -> CalibrationRows:
    """The counted rows at `site` of the held-out split's windows after those an evaluation of `evaluation`
    reads (it reads from the start), enough windows to hold `tokens` of them (first positions and outlier
    rows left out, as in training)."""
    first = windows_holding(evaluation.tokens, heldout.context_size, evaluation.batch_windows)
    read = model_windows(lm, [site], heldout, windows_per_forward(heldout.context_size), skip=first)
    parts = [w.acts[site][w.mask].float() for w in take_tokens(read, tokens)]
    n = sum(len(p) for p in parts)
    if n < tokens:
        raise GreyglassError(f"the held-out split of the corpus ({heldout.corpus or 'bundled'}) holds {n:,} tokens "
                             f"after the {first:,} windows left to evaluation, fewer than the {tokens:,} to calibrate "
                             "on; give a larger --corpus, or fewer --tokens or --eval-tokens")
    return CalibrationRows(torch.cat(parts), first)


def windows_holding(tokens: int, context_size: int, batch: int) -> int:
    """Windows that a reader taking whole batches of `batch` windows reads for `tokens` counted rows at most:
    every position but the sink counts, and one batch more covers outlier rows left out."""
    per_window = max(1, context_size - 1)
    return (math.ceil(tokens / per_window / batch) + 1) * batch
