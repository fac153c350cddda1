"""The frequency-aware sparsity experiment: TopK and JumpReLU, each with and without the
frequency-aware cost, at matched L0, on one site; one table of reconstruction, downstream loss,
dead and dense latents, and first-letter absorption (SAEBench's
mean absorption fraction, full-absorption rate and split features).

Every SAE of the table is trained from the same pass over the same activations (the model
runs once; `train_saes` feeds each batch to all of them), then each is evaluated on held-out
text (`evaluate`) and on the first-letter benchmark (`first_letter_absorption`):
`train_and_evaluate`, which `sae compare` (`compare`) shares.
Each SAE's first-letter results are also saved as an absorption run folder (`absorption/<sae>/`),
the ground truth for validating the weights-only detector on it; `table.md` holds the table.
Matched L0: TopK uses k = L0 exactly; JumpReLU uses `target_l0 = L0` (with the cost on, the
weights are rescaled to average 1 over firings, so the target stays on the real L0); the
measured L0 is reported, since a penalty only lands near its target.

Each SAE is evaluated with the encoder it was trained with (a frequency-aware TopK selects by
pre-activation minus cost at inference too). Its saved folder read by SAELens is a plain TopK,
which selects otherwise; for those rows that encoder is evaluated as well (`saelens_reads`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from ..activations import model_windows, shuffled_rows
from ..atomic import write_text
from ..data.corpus import CorpusConfig, corpus_fingerprint
from ..job import RunInfo
from ..models.lm import LoadedModel
from ..plots import Series, line_chart, save_svg
from ..runs import write_config, write_results
from .absorption import first_letter_absorption
from .calibrate import calibrate_l0, calibration_rows, calibration_target, save_calibrated
from .config import (AbsorptionConfig, AbsorptionRunConfig, FreqCostConfig, FreqExperimentConfig, JumpReLUConfig,
                     MetricsConfig, SAEConfig, TopKConfig, TrainConfig)
from .heldout import TRAINING_TEXT, heldout_status, training_text
from .io import saelens_encoder
from .metrics import evaluate
from .model import SparseAutoencoder
from .report import freq_experiment_section
from .results import FREQ_FIGURES, FREQ_TABLE, AbsorptionResults, Calibration, FreqResults, FreqRow, SAEMetrics
from .train import TrainResult, train_saes, windows_per_forward

VARIANTS = ("topk", "topk+freq", "jumprelu", "jumprelu+freq")


def variant_configs(cfg: FreqExperimentConfig, lm: LoadedModel, context_size: int) -> list[tuple[str, int, SAEConfig]]:
    """(variant, L0, SAEConfig) for every row of the table."""
    base = SAEConfig(d_in=lm.d_model, d_sae=cfg.expansion * lm.d_model, hook_name=lm.site(cfg.site).name,
                     model_name=lm.spec, context_size=context_size, prepend_bos=lm.prepend_bos)
    rows = []
    for l0 in cfg.l0s:
        archs = {"topk": TopKConfig(k=l0, freq_cost_scale=cfg.freq_cost_scale),
                 "jumprelu": JumpReLUConfig(target_l0=float(l0), l0_coefficient=cfg.l0_coefficient)}
        for variant in VARIANTS:
            cost = FreqCostConfig(form=cfg.freq_cost) if "+freq" in variant else FreqCostConfig()
            rows.append((variant, l0, base.with_updates(arch=archs[variant.split("+")[0]], freq_cost=cost)))
    return rows


class Evaluated(NamedTuple):
    """One SAE of an experiment after training: its folder, held-out metrics and first-letter results."""

    sae: SparseAutoencoder
    folder: str  # relative to the run folder
    metrics: SAEMetrics
    absorption: AbsorptionResults
    absorption_run: str  # its `sae_absorption` run folder, relative to the run folder
    saelens_reads: SAEMetrics | None  # what SAELens computes from the folder, where that differs
    calibration: Calibration | None  # with calibrate, for every SAE with a threshold


def train_and_evaluate(lm: LoadedModel, cfgs: Sequence[SAEConfig], train: TrainConfig, corpus: CorpusConfig,
                       eval_tokens: int, acfg: AbsorptionConfig, out: Path, progress: bool = True,
                       resume: bool = False, calibrate: bool = False) -> tuple[list[Evaluated], TrainResult]:
    """Train every SAE of `cfgs` from one pass over the model's activations of `corpus` (its train
    split), then evaluate each on the heldout split and on the first-letter benchmark; the SAEs go
    to `out/saes/`, their first-letter runs to `out/absorption/`. With `calibrate`, each SAE with a
    threshold is first calibrated to its target L0 on `eval_tokens` rows of the held-out split after
    those evaluated (`calibrate.calibration_rows`), and the calibrated SAE (saved beside the trained one)
    is the one evaluated."""
    site = cfgs[0].hook_name
    batches = shuffled_rows(lambda epoch: model_windows(lm, [site], corpus, windows_per_forward(corpus.context_size)),
                            train.batch_size, train.buffer_tokens, seed=train.seed)
    trained = train_saes(cfgs, train, batches, out / "saes", resume=resume, progress=progress,
                         provenance={"model": lm.provenance(), TRAINING_TEXT: training_text(corpus)},
                         device=str(lm.device))
    heldout = replace(corpus, split="heldout")
    ecfg = MetricsConfig(tokens=eval_tokens)
    rows = calibration_rows(lm, site, heldout, eval_tokens, ecfg) if calibrate else None
    evaluated = []
    for sae, folder, sae_cfg in zip(trained.saes, trained.folders, cfgs):
        calibration = None
        if rows is not None and (target := calibration_target(sae_cfg)) is not None:
            calibrated = calibrate_l0(sae, rows.x, target, rows.first_window)
            sae, calibration, folder = calibrated.sae, calibrated.calibration, save_calibrated(calibrated, folder)
        status = heldout_status(training_text(corpus), heldout, folder)
        metrics = evaluate(sae, lm, ecfg, heldout, progress=progress, heldout=status)
        absorption = first_letter_absorption(sae, lm, acfg, progress=progress)
        run = _save_absorption_run(out / "absorption" / folder.name, folder, lm, acfg, absorption)
        plain = saelens_encoder(sae)  # SAELens computes another encoder from this folder: that is measured too
        saelens = None if plain is None else evaluate(plain, lm, ecfg, heldout, progress=progress, heldout=status)
        evaluated.append(Evaluated(sae, str(folder.relative_to(out)), metrics, absorption, str(run.relative_to(out)),
                                   saelens, calibration))
    return evaluated, trained


def run_experiment(lm: LoadedModel, cfg: FreqExperimentConfig, out: Path, progress: bool = True,
                   resume: bool = False) -> FreqResults:
    """Train every variant in one pass, evaluate each, and write the run folder: the rows, the table, two figures."""
    corpus = cfg.training_corpus()
    meta = write_config(out, "sae_freq_experiment", model=lm.provenance(), config=cfg,
                 corpus_fingerprint=corpus_fingerprint(corpus))
    variants = variant_configs(cfg, lm, corpus.context_size)
    evaluated, trained = train_and_evaluate(lm, [c for _, _, c in variants], cfg.train, corpus, cfg.eval_tokens,
                                            cfg.absorption_settings(), out, progress, resume)
    rows = [FreqRow(variant, l0, e.metrics, e.absorption.headline, sae=e.folder, absorption_run=e.absorption_run,
                    saelens_reads=e.saelens_reads) for (variant, l0, _), e in zip(variants, evaluated)]
    for name, svg in figures(rows).items():
        save_svg(out / name, svg)
    results = FreqResults(tuple(rows), trained.tokens, round(trained.seconds, 1))
    write_results(out, results)
    # the table is the report section's, so table.md says what the terminal and the report say
    write_text(out / FREQ_TABLE, freq_experiment_section(results, cfg, RunInfo(out, meta)).markdown())
    return results


def figures(rows: list[FreqRow]) -> dict[str, str]:
    """SVGs against the measured L0, one line per variant: explained variance, and absorption (95% band)."""
    def series(variant: str, y, scored_only: bool = False) -> Series:
        # an SAE with no letter above the probe bar has no absorption point
        mine = [r for r in rows if r.variant == variant and not (scored_only and r.absorption.mean_absorption_fraction is None)]
        points = [y(r) for r in mine]
        return Series(variant, [r.metrics.l0 for r in mine], *([list(c) for c in zip(*points)] or [[]]))

    ev = [series(v, lambda r: (r.metrics.explained_variance,)) for v in VARIANTS]
    ab = [series(v, lambda r: tuple(100 * x for x in r.absorption.mean_absorption_fraction), scored_only=True)
          for v in VARIANTS]
    frontier, absorption = FREQ_FIGURES
    return {frontier: line_chart(ev, "Reconstruction against sparsity", "L0 (active latents per token)",
                                 "explained variance"),
            absorption: line_chart(ab, "First-letter absorption against sparsity", "L0 (active latents per token)",
                                   "mean absorption fraction (%)")}


def _save_absorption_run(run: Path, sae_folder: Path, lm: LoadedModel, acfg: AbsorptionConfig,
                         results: AbsorptionResults) -> Path:
    """The first-letter results as a `greyglass sae absorption` run folder: the ground truth
    `sae absorption-weights --ground-truth` validates the weights-only detector against."""
    write_config(run, "sae_absorption", model=lm.provenance(), config=AbsorptionRunConfig(sae=str(sae_folder),
                                                                                           absorption=acfg))
    write_results(run, results)
    return run
