"""Report sections (and terminal summaries) for the SAE jobs: training, evaluation, first-letter absorption,
the weights-only absorption detector, meta-SAEs and the frequency-aware sparsity experiment.

An evaluation's headline leads with what splicing the SAE in costs the model: the next-word loss
increase in nats (with its interval) and the KL to the clean model. CE loss recovered is shown
against mean ablation beside zero ablation, since zeroing a mid-depth layer is so destructive that
almost any SAE "recovers" most of it; explained variance comes last (a single large residual
dimension can push it near 100% on small models, see docs/sae.md). A training run claims nothing
about quality: it has not seen held-out text.
"""

from __future__ import annotations

import math

from ..job import RunInfo
from ..plots import bar_chart
from ..report.figures import run_svg
from ..report.section import Section, Table, fmt, provenance
from ..stats import Estimate
from .config import (AbsorptionRunConfig, CalibrateRunConfig, CompareConfig, DetectorRunConfig,
                     FreqExperimentConfig, MetaRunConfig, MetricsRunConfig, SparseProbingRunConfig, TrainRunConfig)
from .results import (COMPARE_FIGURES, COMPARE_TABLE, DENSE_RATE, FREQ_FIGURES, FREQ_TABLE, AbsorptionHeadline,
                      AbsorptionResults, CalibrateResults, Calibration, CompareResults, CompareRow, DetectorResults,
                      FreqResults, FreqRow, MetaResults, MetricsResults, SAEMetrics, SparseProbingResults, TrainResults)

BARELY_WORSE_NATS = 0.05
"""A loss increase below this (perplexity up under 5%) reads as 'barely worse'."""
MUCH_WORSE_NATS = 0.2
"""A loss increase above this (perplexity up over 22%) reads as 'much worse'."""


def train_section(res: TrainResults, cfg: TrainRunConfig, run: RunInfo) -> Section:
    one = len(res.saes) == 1
    source = f"the activation store {cfg.store}" if cfg.store else "the model, on the fly"
    headline = (f"{'A sparse autoencoder was' if one else f'{len(res.saes)} sparse autoencoders were'} trained on "
                f"{res.tokens:,} activations from {source}; {'it has' if one else 'they have'} not been evaluated on "
                f"held-out text, so nothing is claimed about {'its' if one else 'their'} quality.")
    numbers = [(f"SAE {run.folder / s.folder}", f"{s.architecture}{f' k={s.k}' if s.k else ''}, {s.d_sae:,} latents at "
                f"{s.site}; at the end of training: fraction of variance unexplained {s.fvu:.3f}, L0 {s.l0:.1f}, "
                f"dead {s.dead:.1%}") for s in res.saes]
    numbers.append(("activations each SAE trained on", f"{res.tokens:,}"))
    if res.tokens_per_second:
        numbers.append(("training speed", f"{res.tokens_per_second:,.0f} tokens/s ({res.seconds:.0f} s)"))
    return Section(
        kind="sparse autoencoder training", title="Sparse autoencoders trained on the model's activations",
        headline=headline, numbers=numbers,
        shows=["How well each SAE fit the batches it trained on (smoothed over the last steps)."],
        does_not_show=["How faithful an SAE is on text it never saw: run `greyglass sae eval` on its folder."],
        provenance=provenance(run.meta, str(run.folder)),
    )


def damage(m: SAEMetrics) -> str:
    """How much worse the spliced model predicts, in words: no change is claimed unless the loss increase's
    interval excludes zero."""
    if m.ce_increase.lo <= 0:
        return "no worse that this evaluation can detect"
    if m.ce_increase.value < BARELY_WORSE_NATS:
        return "barely worse"
    return "noticeably worse" if m.ce_increase.value < MUCH_WORSE_NATS else "much worse"


def eval_section(res: MetricsResults, cfg: MetricsRunConfig, run: RunInfo) -> Section:
    m = res.metrics
    notes = []
    if m.explained_variance > 0.99 and m.ce_loss_recovered < 0.95:
        notes.append("Explained variance looks near-perfect, but on this model one residual dimension carries most "
                     "of the variance; the prediction-quality figure is the honest one.")
    if not m.heldout.verified:
        notes.append("The evaluation text is not shown to be held out: the SAE may have trained on some of it, which "
                     "flatters every figure here.")
    numbers = [
        ("next-word loss increase with the SAE spliced in (nats/token)", fmt(m.ce_increase)),
        ("KL from the model's own next-word predictions (nats/token)", fmt(m.kl_sae)),
        ("next-word loss: clean / with SAE", f"{m.ce_clean:.3f} / {m.ce_sae:.3f}"),
        ("CE loss recovered", _recovered(m)),
        ("active features per token (L0)", f"{m.l0:.1f} of {m.d_sae:,}"),
        ("explained variance", f"{m.explained_variance:.1%} (cosine of the reconstruction {m.cosine:.3f})"),
        ("features that never fired (dead)", f"{m.dead_fraction:.1%}"),
        (f"features firing on over {DENSE_RATE:.0%} of tokens (dense)", f"{m.dense_fraction:.1%}"),
        ("held-out tokens evaluated" if m.heldout.verified else "tokens evaluated", f"{m.n_tokens:,}"),
        ("is the text held out?", f"yes: {m.heldout.basis}" if m.heldout.verified
         else f"NOT shown to be held out: {m.heldout.reason}"),
    ]
    if res.saelens_reads is not None:
        numbers.append(("as SAELens reads this folder (a plain TopK, no frequency cost)", _brief(res.saelens_reads)))
    return Section(
        kind="sparse autoencoder", title="Can the model's layer be rewritten as a few readable features?",
        figure_svg=_density_svg(m), headline=_eval_headline(m), numbers=numbers,
        shows=["How much of what this layer does survives being rewritten as a sparse sum of features.",
               "Whether the features are used at all (dead) or too often to be specific (dense)."],
        does_not_show=["What any single feature means: see the feature dashboards.",
                       "That the features are the model's 'true' features: an SAE is one of many possible rewrites.",
                       "Anything about other layers."],
        provenance=provenance(run.meta, str(run.folder)), notes=notes,
    )


def _eval_headline(m: SAEMetrics) -> str:
    where = "held-out text" if m.heldout.verified else "text not shown to be held out"
    increase = m.ce_increase.value
    return (f"With the sparse autoencoder spliced in at {m.site} (about {m.l0:.0f} active features per token out of "
            f"{m.d_sae:,}), the model predicts the next word {damage(m)} on {where}: loss up {increase:.2f} nats per "
            f"token ({m.ce_clean:.2f} -> {m.ce_sae:.2f}, perplexity x{math.exp(increase):.2f}), "
            f"KL {m.kl_sae.value:.2f} nats from the model's own predictions.")


def _recovered(m: SAEMetrics) -> str:
    return (f"{m.ce_loss_recovered_mean:.1%} vs mean ablation (CE {m.ce_mean:.3f}); {m.ce_loss_recovered:.1%} vs zero "
            f"ablation (CE {m.ce_zero:.3f})")


def _brief(m: SAEMetrics) -> str:
    return (f"loss increase {fmt(m.ce_increase)} nats, KL {m.kl_sae.value:.3f}, explained variance "
            f"{m.explained_variance:.1%}, L0 {m.l0:.1f}")


def _density_svg(m: SAEMetrics) -> str:
    """How often features fire: one bar per log10-rate bin, plus the features that never fired."""
    hist = m.density_histogram
    labels = ["never"] + [f"1e{hist.log10_rate_edges[i]:g}" for i in range(len(hist.counts))]
    return bar_chart(labels, [hist.never_fired, *hist.counts], "How often each feature fires",
                     "features (by firing rate, from rarest)")


def _est(est: Estimate | None, digits: int = 3, percent: bool = False) -> str:
    """An interval, or n/a where no letter was scored."""
    return "n/a (no letter scored)" if est is None else fmt(est, digits, percent)


def absorption_section(res: AbsorptionResults, cfg: AbsorptionRunConfig, run: RunInfo) -> Section:
    h = res.headline
    fraction, full = h.mean_absorption_fraction, h.full_absorption_rate
    if fraction is None or full is None or h.mean_probe_f1 < 0.6:
        headline = (f"The model's first-letter information is too weak at {res.site} (probe F1 {h.mean_probe_f1:.2f}, "
                    f"{h.letters_scored} letters above the bar) to measure feature absorption there.")
    elif h.mean_k_sparse_f1 < 0.5:
        headline = (f"The SAE has no clean 'first letter' features at {res.site} (its best few features tell letters "
                    f"apart with F1 {h.mean_k_sparse_f1:.2f}), so its absorption figures mean little.")
    elif fraction.lo > 0.01:
        headline = (f"Feature absorption is present: on average {100 * fraction.value:.1f}% of a word's first-letter "
                    "signal is carried by more specific features instead of the SAE's letter features, and on "
                    f"{100 * full.value:.1f}% of words the letter features stay silent altogether.")
    else:
        headline = (f"We measured little feature absorption (mean absorption fraction {100 * fraction.value:.1f}%, 95% "
                    f"interval up to {100 * fraction.hi:.1f}%): where the model knows a word's first letter, the SAE's "
                    "letter features usually carry it.")
    scored = {letter: r for letter, r in res.letters.items() if r.scored}
    worst = sorted(scored.items(), key=lambda kv: -(kv[1].mean_absorption_fraction or 0))[:3]
    numbers = [("mean absorption fraction (share of the letter signal carried by other features; mean over letters)",
                _est(fraction, percent=True)),
               ("full absorption (letter features silent, one other feature carries it; mean over letters)",
                _est(full, percent=True)),
               ("letter features per letter (split features)", _est(h.mean_split_features, 2)),
               ("first-letter probe quality (mean test F1)", f"{h.mean_probe_f1:.2f}"),
               ("the SAE's best few latents as a letter classifier (mean F1)", f"{h.mean_k_sparse_f1:.2f}"),
               ("letters scored (of those with enough words); probe-right test words",
                f"{h.letters_scored} of {len(res.letters)}; {h.probe_right_words}"),
               ("words sampled", str(res.n_words))]
    if worst:
        numbers.append(("most absorbed letters", ", ".join(f"{letter.upper()} {r.mean_absorption_fraction:.0%}"
                                                           for letter, r in worst)))
    numbers += [(f"latent {a.latent} absorbs '{a.letter.upper()}'", f"{a.words} words, e.g. {', '.join(a.examples[:4])}")
                for a in res.absorbing_latents[:5]]
    return Section(
        kind="feature absorption", title="Do the SAE's features quietly miss cases?", headline=headline, numbers=numbers,
        shows=["How often a general feature fails to fire because a more specific one took over its job "
               "(Chanin et al., 'A is for Absorption', as SAEBench measures it), on a task with known ground truth; "
               "intervals resample letters."],
        does_not_show=["Absorption of other concepts than first letters.",
                       "That features without absorption mean what their labels say."],
        provenance=provenance(run.meta, str(run.folder)),
    )


def sparse_probing_section(res: SparseProbingResults, cfg: SparseProbingRunConfig, run: RunInfo) -> Section:
    ks = [s.k for s in res.tasks[0].sparse]
    raw, best_k = res.mean_accuracy(None), max(ks)
    best = res.mean_accuracy(best_k)
    # a task's sparse probe matches the raw one when their intervals overlap
    matched = [t.task for t in res.tasks if t.sparse[-1].accuracy.hi >= t.raw.lo]
    headline = (f"Over {len(res.tasks)} binary tasks at {res.site}, a probe on the SAE's {best_k} most class-separating "
                f"latents is right on {best:.1%} of held-out examples, against {raw:.1%} for a probe on the raw "
                f"activations; its interval reaches the raw probe's on {len(matched)} of {len(res.tasks)} tasks"
                f"{' (' + ', '.join(matched) + ')' if matched else ''}.")
    numbers = [(f"mean accuracy over tasks, {'raw activations' if k is None else f'top {k} latents'}",
                f"{res.mean_accuracy(k):.1%}") for k in (None, *ks)]
    for t in res.tasks:
        numbers.append((f"{t.task}: raw probe ({t.n_train} train, {t.n_test} test examples, {t.test_clusters} "
                        "test clusters)", fmt(t.raw, percent=True)))
        numbers += [(f"{t.task}: top {s.k} latents", fmt(s.accuracy, percent=True) +
                     (f"; latents {', '.join(map(str, s.latents))}" if s.k <= 5 else "")) for s in t.sparse]
    return Section(
        kind="sparse probing", title="Do a few of the SAE's latents carry what a probe finds?", headline=headline,
        numbers=numbers,
        shows=["SAEBench's sparse probing on greyglass's bundled binary tasks: latents chosen by the difference of "
               "class means on the train split, a logistic regression on them, test accuracy with 95% intervals that "
               "resample the task's clusters (letters, statement pairs, NTREX lines, questions)."],
        does_not_show=["That the chosen latents mean the task's concept: they may only correlate with it.",
                       "Tasks other than these four; SAEBench's own datasets (it mean-pools latents over a text, "
                       "greyglass reads the word or the last token)."],
        provenance=provenance(run.meta, str(run.folder)),
    )


def detector_section(res: DetectorResults, cfg: DetectorRunConfig, run: RunInfo) -> Section:
    v, n = res.validation, len(res.pairs)
    if v is None:
        headline = (f"The weights alone point to {n} candidate absorbing latent pairs (a child whose decoder direction "
                    "contains its parent's, which the parent's encoder ignores); without a first-letter run to check "
                    "them against (--ground-truth) they are candidates, not measured absorption.")
    elif not v.truth_pairs:
        headline = (f"The first-letter run found no absorbing pairs in this SAE, so there is nothing to check the "
                    f"weights-only detector against; its {n} pairs remain candidates.")
    elif v.auroc.lo > 0.5:
        headline = (f"Read from the weights alone, the detector ranks the {v.truth_pairs} absorbing pairs a first-letter "
                    f"run measured above the other pairs of the same latents: AUROC {fmt(v.auroc)}, against "
                    f"{v.auroc_decoder_cos_only:.3f} for the decoder cosine alone.")
    else:
        headline = (f"The weights-only detector does not reliably rank the {v.truth_pairs} absorbing pairs a "
                    f"first-letter run measured above the other pairs (AUROC {fmt(v.auroc)}), so its {n} candidates "
                    "are unconfirmed.")
    numbers = [("candidate pairs kept", f"{n:,}"),
               ("firing rates used (a parent fires at least as often as its child)", "yes" if res.used_rates else "no")]
    numbers += [(f"latents {p.parent} -> {p.child} (parent -> child)", f"score {p.score:.4f} (decoder cosine "
                 f"{p.decoder_cos:.2f}, encoder gap {p.encoder_gap:.2f})") for p in res.pairs[:5]]
    if v is not None:
        numbers += [("absorbing pairs the first-letter run measured", str(v.truth_pairs)),
                    ("the detector's pairs against them: precision / recall", f"{v.precision:.1%} / {v.recall:.1%}"),
                    ("AUROC of the score over (main latent, latent) pairs, measured pairs positive", fmt(v.auroc)),
                    ("AUROC of the decoder cosine alone", f"{v.auroc_decoder_cos_only:.3f}"),
                    ("(main latent, latent) pairs scored", f"{v.candidate_pairs:,}")]
    return Section(
        kind="absorption detector", title="Do the SAE's weights show which features absorb others?",
        headline=headline, numbers=numbers,
        shows=["Which latent pairs the weights alone suggest absorb one another, with no labelled data; against a "
               "first-letter run of the same SAE, how well that ranking matches measured absorption."],
        does_not_show=["That a candidate pair absorbs: only a run with ground truth (the first-letter benchmark) "
                       "measures it.", "Absorption that leaves no trace in the weights."],
        provenance=provenance(run.meta, str(run.folder)),
    )


def meta_section(res: MetaResults, cfg: MetaRunConfig, run: RunInfo) -> Section:
    fve = res.fraction_variance_explained
    headline = (f"Many of the SAE's {res.d_sae:,} features are built from shared parts: {res.meta_latents} "
                f"'meta-features' explain {100 * fve:.0f}% of how the features are written."
                if fve >= 0.5 else
                f"The SAE's features are mostly not combinations of a few shared parts: {res.meta_latents} "
                f"meta-features explain only {100 * fve:.0f}% of how they are written.")
    numbers = [("variance of the decoder directions explained", f"{100 * fve:.1f}%"),
               ("meta-features used per feature (mean)", f"{res.mean_meta_latents_per_latent:.1f}"),
               ("features flagged as compositions of several meta-features",
                f"{res.n_compositional} ({100 * res.fraction_compositional:.1f}%)")]
    numbers += [(f"meta-feature {m.meta_latent} ({m.n_members} members)",
                 "features " + ", ".join(str(x.latent) for x in m.members[:5])
                 + (f"; promotes {', '.join(t.strip() for t in m.tokens)}" if m.tokens else ""))
                for m in res.meta[:5]]
    numbers.append(("the meta-SAE", str(run.folder / res.meta_sae)))
    return Section(
        kind="meta-SAE", title="Are the SAE's features made of smaller parts?", headline=headline, numbers=numbers,
        shows=["Whether the SAE's feature directions decompose into a few shared components (Bussmann et al.)."],
        does_not_show=["That the components are meaningful on their own: read their member features first."],
        provenance=provenance(run.meta, str(run.folder)),
    )


def freq_experiment_section(res: FreqResults, cfg: FreqExperimentConfig, run: RunInfo) -> Section:
    pairs = [(plain, freq) for plain in res.rows for freq in res.rows
             if freq.variant == plain.variant + "+freq" and freq.target_l0 == plain.target_l0]
    measured = [(p.absorption.mean_absorption_fraction, f.absorption.mean_absorption_fraction) for p, f in pairs]
    measured = [(p, f) for p, f in measured if p is not None and f is not None]
    lower = sum(f.hi < p.lo for p, f in measured)
    higher = sum(f.lo > p.hi for p, f in measured)
    shift = max(abs(f.metrics.explained_variance - p.metrics.explained_variance) for p, f in pairs)
    if lower and not higher:
        headline = (f"Charging rare features more than common ones lowered feature absorption in {lower} of "
                    f"{len(measured)} comparisons at matched sparsity, beyond the intervals.")
    elif higher and not lower:
        headline = (f"Charging rare features more than common ones raised feature absorption in {higher} of "
                    f"{len(measured)} comparisons at matched sparsity, beyond the intervals.")
    else:
        headline = (f"Charging rare features more than common ones made no difference to feature absorption that this "
                    f"run can detect ({len(measured)} comparisons at matched sparsity); explained variance moved by at "
                    f"most {shift:.3f}.")
    numbers = [(f"{r.variant} at target L0 {r.target_l0}, as SAELens reads its folder (a plain TopK, no frequency "
                 "cost)", _brief(r.saelens_reads)) for r in res.rows if r.saelens_reads is not None]
    numbers.append(("the table in markdown", str(run.folder / FREQ_TABLE)))
    return Section(
        kind="frequency-aware sparsity", title="Does making common features cheaper stop features quietly missing cases?",
        headline=headline, numbers=numbers, table=Table(FREQ_COLUMNS, [_freq_row(r) for r in res.rows]),
        figure_svg="".join(run_svg(run.folder, name) for name in FREQ_FIGURES),
        shows=["SAEs trained on the same data with and without a cost that makes often-used features cheaper to "
               "switch on, compared on reconstruction, the model's loss and first-letter absorption."],
        does_not_show=["Other seeds, sites, models or SAE widths: one run, one layer.",
                       "Absorption of concepts other than first letters."],
        provenance=provenance(run.meta, str(run.folder)),
    )


FREQ_COLUMNS = ("variant", "target L0", "L0", "loss increase (nats)", "KL", "CE recovered vs mean / zero ablation",
                "explained variance", "dead", "dense", "absorption fraction", "full absorption", "split features")
"""The experiment's table: the cost of splicing each SAE in (loss increase, KL) comes before CE recovered."""


def _freq_row(r: FreqRow) -> tuple[str, ...]:
    return (r.variant, str(r.target_l0), *_sae_cells(r.metrics, r.absorption))


def _sae_cells(m: SAEMetrics, a: AbsorptionHeadline) -> tuple[str, ...]:
    """The cells every SAE table shares, from L0 to split features (`FREQ_COLUMNS[2:]`)."""
    return (f"{m.l0:.1f}", fmt(m.ce_increase), fmt(m.kl_sae), f"{m.ce_loss_recovered_mean:.1%} / {m.ce_loss_recovered:.1%}",
            f"{m.explained_variance:.3f}", f"{m.dead_fraction:.1%}", f"{m.dense_fraction:.1%}",
            _est(a.mean_absorption_fraction, percent=True), _est(a.full_absorption_rate, percent=True),
            _est(a.mean_split_features, 2))


MIN_LETTERS_COMPARED = 2
"""`sae compare` ranks SAEs on absorption only where at least this many letters were scored."""


def calibrate_section(res: CalibrateResults, cfg: CalibrateRunConfig, run: RunInfo) -> Section:
    c = res.calibration
    return Section(
        kind="sparse autoencoder", title="Does the SAE fire as many latents as it should?",
        headline=(f"Every threshold of {res.trained_sae} shifted by {c.shift:+.4g}: on {c.rows:,} tokens of "
                  f"{_calibration_text(c)} it now fires {c.l0_after:.1f} latents per token (target {c.target_l0:g}), "
                  f"against {c.l0_before:.1f} with its learned thresholds."),
        numbers=[("target L0", f"{c.target_l0:g}"), ("L0 with the learned thresholds", f"{c.l0_before:.2f}"),
                 ("L0 calibrated", f"{c.l0_after:.2f}"), ("shift added to every threshold", f"{c.shift:+.5g}"),
                 ("tokens calibrated on", f"{c.rows:,}"), ("calibrated SAE folder", str(run.folder / res.sae))],
        shows=["One shift on every latent's threshold that brings the SAE's mean L0 on the calibration text to the "
               "target, so SAEs can be compared at the sparsity they were meant to have (a variant of the published "
               "BatchTopK rule, which keeps the learned running-average threshold)."],
        does_not_show=["What the calibrated SAE reconstructs, or its L0 on the held-out text evaluation reads: run "
                       f"`greyglass sae eval` on the calibrated folder (with --tokens up to {cfg.eval_tokens:,}, the "
                       "tokens calibration left to it)."],
        provenance=provenance(run.meta, str(run.folder)),
    )


def _calibration_text(c: Calibration) -> str:
    if c.first_window is None:
        return "training text"
    return f"held-out text (from window {c.first_window:,}, after those evaluated)"


def compare_section(res: CompareResults, cfg: CompareConfig, run: RunInfo) -> Section:
    groups: dict[tuple[int, int], list[CompareRow]] = {}
    for r in res.rows:
        groups.setdefault((r.d_sae, r.target_l0), []).append(r)
    findings = [_least_absorbed(rows, width, l0) for (width, l0), rows in groups.items()]
    measured = [f for f in findings if f is not None]
    beyond = [f for f, clear in measured if clear]
    if not measured:
        headline = (f"{len(res.rows)} SAEs were trained on the same activations, but too few letters were scored "
                    f"(fewer than {MIN_LETTERS_COMPARED} per SAE: weak first-letter information, or too few --words) "
                    "to compare their absorption.")
    elif beyond:
        headline = (f"Of {len(res.rows)} SAEs trained on the same activations, {'; '.join(beyond)}, beyond the 95% "
                    f"intervals of every other SAE of its width and L0 ({len(beyond)} of {len(measured)} settings).")
    else:
        headline = (f"Across {len(res.rows)} SAEs trained on the same activations, no architecture absorbs first-letter "
                    f"features less than the others beyond the intervals at any of the {len(measured)} settings "
                    f"measured; lowest means: {'; '.join(f for f, _ in measured)}.")
    ks = cfg.probing.ks
    columns = ("variant", "d_sae", "target L0", *FREQ_COLUMNS[2:], "letters scored",
               *(f"top-{k} probe (mean over tasks)" for k in ks), "raw probe (mean over tasks)")
    numbers = [(f"{r.label}: sparse probing per task (95% intervals resample each task's clusters)",
                _probing_by_task(r)) for r in res.rows]
    numbers += [(f"{r.label}, as SAELens reads its folder", _brief(r.saelens_reads))
                for r in res.rows if r.saelens_reads is not None]
    numbers += [(f"{r.label}: thresholds calibrated to L0 {c.target_l0:g} (variant)",
                 f"every threshold shifted by {c.shift:+.4g}; L0 on {c.rows:,} tokens of {_calibration_text(c)} "
                 f"{c.l0_before:.1f} learned, {c.l0_after:.1f} calibrated")
                for r in res.rows if (c := r.calibration) is not None]
    numbers.append(("the table in markdown", str(run.folder / COMPARE_TABLE)))
    calibrated = any(r.calibration is not None for r in res.rows)
    return Section(
        kind="SAE comparison", title="Which SAE keeps its features honest?", headline=headline, numbers=numbers,
        table=Table(columns, [_compare_row(r, ks) for r in res.rows]),
        figure_svg="".join(run_svg(run.folder, name) for name in COMPARE_FIGURES),
        shows=["SAEs of several architectures trained on the same activations at matched sparsity, compared on what "
               "splicing them in costs, reconstruction, dead and dense latents, first-letter absorption and "
               "splitting (SAEBench's measures, intervals resampling letters), and sparse probing."]
        + (["Calibrated SAEs: each BatchTopK, Matryoshka and JumpReLU threshold was shifted by one amount so the L0 on "
            "held-out text (not the text evaluated) is the target (a variant; the published BatchTopK rule is the "
            "learned running-average threshold). The L0 column is measured on the evaluated text."]
           if calibrated else []),
        does_not_show=["Other seeds, sites or models: one run, one layer, one seed per SAE.",
                       "Absorption of concepts other than first letters."],
        provenance=provenance(run.meta, str(run.folder)),
    )


def _least_absorbed(rows: list[CompareRow], width: int, l0: int) -> tuple[str, bool] | None:
    """(the lowest mean absorption fraction among `rows`, whether its interval clears every other's), or None."""
    # a mean over one letter has no interval to compare: such an SAE is not measured here
    scored = [(r, r.absorption.mean_absorption_fraction) for r in rows
              if r.absorption.mean_absorption_fraction and r.absorption.letters_scored >= MIN_LETTERS_COMPARED]
    if not scored:
        return None
    best, est = min(scored, key=lambda p: p[1].value)
    clear = len(scored) > 1 and all(est.hi < other.lo for r, other in scored if r is not best)
    return (f"{best.variant} absorbs least at width {width:,} and L0 {l0} ({100 * est.value:.1f}%)", clear)


def _compare_row(r: CompareRow, ks: tuple[int, ...]) -> tuple[str, ...]:
    p = r.sparse_probing
    return (r.variant, str(r.d_sae), str(r.target_l0), *_sae_cells(r.metrics, r.absorption),
            str(r.absorption.letters_scored), *(f"{p.mean_accuracy(k):.1%}" for k in ks), f"{p.mean_accuracy(None):.1%}")


def _probing_by_task(r: CompareRow) -> str:
    return "; ".join(f"{t.task} raw {fmt(t.raw, percent=True)}, "
                     + ", ".join(f"top-{s.k} {fmt(s.accuracy, percent=True)}" for s in t.sparse)
                     for t in r.sparse_probing.tasks)