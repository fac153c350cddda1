"""`sae compare`: which SAE should I trust for this model? Several architectures from one pass over
the same activations, at matched L0 and widths, evaluated alike, on one table.

Training and the held-out and first-letter evaluations are `freq_experiment.train_and_evaluate`
(the same machinery as `sae freq-experiment`); sparse probing (`sparse_probing`) reads each
task's activations once and probes every SAE on them. The run folder holds the SAEs (`saes/`),
their first-letter runs (`absorption/`), `table.md` (the report section's table) and the figures `COMPARE_FIGURES`: explained
variance against L0 (the frontier), and one bar chart per metric with 95% whiskers.
"""

from __future__ import annotations

from pathlib import Path

from ..atomic import write_text
from ..data.corpus import corpus_fingerprint
from ..job import RunInfo
from ..models.lm import LoadedModel
from ..plots import Series, bar_chart, line_chart, save_svg
from ..runs import write_config, write_results
from ..stats import Estimate
from .config import CompareConfig, SAEConfig
from .freq_experiment import train_and_evaluate
from .report import compare_section
from .results import COMPARE_FIGURES, COMPARE_TABLE, CompareResults, CompareRow, SparseProbingResults
from .sparse_probing import probe_task, task_data


def run_compare(lm: LoadedModel, cfg: CompareConfig, out: Path, progress: bool = True,
                resume: bool = False) -> CompareResults:
    """Train every SAE in one pass, evaluate each, and write the run folder: rows, table, figures."""
    corpus = cfg.training_corpus()
    meta = write_config(out, "sae_compare", model=lm.provenance(), config=cfg, corpus_fingerprint=corpus_fingerprint(corpus))
    base = SAEConfig(d_in=lm.d_model, hook_name=lm.site(cfg.site).name, model_name=lm.spec,
                     context_size=corpus.context_size, prepend_bos=lm.prepend_bos)
    variants = cfg.sae_configs(base)
    evaluated, trained = train_and_evaluate(lm, [c for _, _, c in variants], cfg.train, corpus, cfg.eval_tokens,
                                            cfg.absorption_settings(), out, progress, resume, cfg.calibrate)
    pcfg = cfg.probing_settings()
    tasks = {t: task_data(lm, base.hook_name, t, pcfg, progress) for t in pcfg.tasks}  # one read for every SAE
    rows = []
    for (variant, l0, sae_cfg), e in zip(variants, evaluated):
        probing = SparseProbingResults(base.hook_name, tuple(probe_task(e.sae, t, data, pcfg) for t, data in tasks.items()))
        rows.append(CompareRow(variant, sae_cfg.d_sae, l0, e.metrics, e.absorption.headline, probing, e.folder,
                               e.absorption_run, e.saelens_reads, e.calibration))
    for name, svg in figures(rows, pcfg.ks[0]).items():
        save_svg(out / name, svg)
    results = CompareResults(tuple(rows), trained.tokens, round(trained.seconds, 1))
    write_results(out, results)
    # the table is the report section's, so table.md says what the terminal and the report say
    write_text(out / COMPARE_TABLE, compare_section(results, cfg, RunInfo(out, meta)).markdown())
    return results


def figures(rows: list[CompareRow], k: int) -> dict[str, str]:
    """The frontier (explained variance against the measured L0, a line per variant and width) and one
    bar chart per metric, a bar per SAE with its 95% interval where the metric has one."""
    lines = []
    for variant, width in dict.fromkeys((r.variant, r.d_sae) for r in rows):
        mine = sorted((r for r in rows if (r.variant, r.d_sae) == (variant, width)), key=lambda r: r.metrics.l0)
        lines.append(Series(f"{variant} {width}", [r.metrics.l0 for r in mine],
                            [r.metrics.explained_variance for r in mine]))
    labels = [r.label for r in rows]

    def bars(title: str, y_label: str, values: list[Estimate | None], scale: float = 1.0) -> str:
        # an SAE with no letter above the probe bar has no absorption figure: it gets no bar
        shown = [(label, v) for label, v in zip(labels, values) if v is not None]
        return bar_chart([label for label, _ in shown], [scale * v.value for _, v in shown], title, y_label,
                         errors=[(scale * v.lo, scale * v.hi) for _, v in shown])

    frontier, loss, fraction, full, split, probing = COMPARE_FIGURES
    return {
        frontier: line_chart(lines, "Reconstruction against sparsity", "L0 (active latents per token)",
                             "explained variance"),
        loss: bars("Next-token loss increase when spliced in", "nats", [r.metrics.ce_increase for r in rows]),
        fraction: bars("First-letter absorption fraction", "% (mean over letters)",
                       [r.absorption.mean_absorption_fraction for r in rows], 100),
        full: bars("First-letter full absorption", "% of words (mean over letters)",
                   [r.absorption.full_absorption_rate for r in rows], 100),
        split: bars("Split features per letter", "latents", [r.absorption.mean_split_features for r in rows]),
        # no interval: a mean over four tasks; each task's interval is in results.json and the table
        probing: bar_chart(labels, [100 * r.sparse_probing.mean_accuracy(k) for r in rows],
                           f"Sparse probing, top {k} latent{'s' if k > 1 else ''} (mean over tasks)", "% accuracy"),
    }
