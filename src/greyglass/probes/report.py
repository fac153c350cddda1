"""Report sections (and terminal summaries) for the probe jobs: a layer sweep, transfer between
statement sets, and where an instructed lie is decided."""

from __future__ import annotations

from ..job import RunInfo
from ..report.figures import run_svg
from ..report.section import Section, fmt, provenance
from .config import (LyingConfig, LyingResults, SweepConfig, SweepResults, TransferConfig, TransferResults)


def sweep_section(res: SweepResults, cfg: SweepConfig, run: RunInfo) -> Section:
    best = res.best
    acc = best.accuracy
    majority = max(res.true_fraction, 1 - res.true_fraction)
    depth = f"{100 * res.best_depth_fraction:.0f}% of the way up"
    if acc.lo > majority:
        headline = (f"A simple linear probe reads whether a '{res.data}' statement is true from layer "
                    f"{best.layer} ({depth}): {100 * acc.value:.0f}% correct on {res.n_test} statements it never saw.")
    else:
        headline = (f"No layer's probe reliably beats guessing on held-out '{res.data}' statements "
                    f"(best: {100 * acc.value:.0f}% at layer {best.layer}, guessing gives {100 * majority:.0f}%).")
    return Section(
        kind="linear probe", title="Does the model represent whether a statement is true?", headline=headline,
        figure_svg=run_svg(run.folder, res.plot),
        numbers=[(f"held-out accuracy at layer {best.layer} (chosen on validation data)", fmt(acc, percent=True)),
                 ("AUROC at that layer", fmt(best.auroc)),
                 ("true-positive rate at 1% false positives", fmt(best.tpr_at_1pct_fpr, percent=True)),
                 ("accuracy from always guessing the commoner label", f"{100 * majority:.0f}%"),
                 ("statements: train / held-out", f"{res.n_train} / {res.n_test}"),
                 ("probe kind", res.kind),
                 ("the best layer's probe", str(run.folder / res.best_probe))],
        shows=["Whether the information is linearly readable inside the model at each layer."],
        does_not_show=["That the model uses this information, or 'believes' anything: a probe only reads.",
                       "That the probe reads truth in general: one trained on one kind of statement can fail on "
                       "others (see the transfer matrix, e.g. negated statements)."],
        provenance=provenance(run.meta, str(run.folder)),
    )


def transfer_section(res: TransferResults, cfg: TransferConfig, run: RunInfo) -> Section:
    names = res.train_rows_test_columns
    cells = {(a, b): res.accuracy[i][j] for i, a in enumerate(names) for j, b in enumerate(names)}
    off = {k: v for k, v in cells.items() if k[0] != k[1]}
    above = sorted(f"{a} -> {b}" for (a, b), v in off.items() if v.lo > 0.5)
    below = sorted(f"{a} -> {b}" for (a, b), v in off.items() if v.hi < 0.5)
    if above and not below:
        headline = (f"A {res.kind} probe at layer {res.layer} trained on one statement set beats chance on every "
                    f"other set it was tested on ({len(above)} of {len(off)} pairs), so it reads something shared "
                    "by them, not only one set's wording.")
    elif below:
        headline = (f"A {res.kind} probe at layer {res.layer} does not carry over between every pair of statement "
                    f"sets: {len(below)} of {len(off)} train/test pairs score reliably below chance "
                    f"({', '.join(below[:3])}{', ...' if len(below) > 3 else ''}), so part of what it reads is "
                    "specific to the set it was trained on.")
    else:
        headline = (f"A {res.kind} probe at layer {res.layer} beats chance on {len(above)} of {len(off)} train/test "
                    "pairs of different statement sets; on the others its accuracy is not distinguishable from chance.")
    return Section(
        kind="probe transfer", title="Does a truth probe trained on one kind of statement work on others?",
        headline=headline, figure_svg=run_svg(run.folder, res.plot),
        numbers=[(f"trained on {a}, tested on {b}", fmt(v, percent=True)) for (a, b), v in cells.items()]
        + [("held-out statements per set", ", ".join(f"{n}: {res.n_test[n]}" for n in names))],
        shows=["How far a probe generalises beyond the statements it was trained on (Marks & Tegmark): the "
               "diagonal is ordinary held-out accuracy, the rest is transfer."],
        does_not_show=["Why a transfer fails: a negated set can flip the direction without the model lacking truth.",
                       "Anything about layers other than the one probed."],
        provenance=provenance(run.meta, str(run.folder)),
    )


def lying_section(res: LyingResults, cfg: LyingConfig, run: RunInfo) -> Section:
    numbers = [(f"answers correct, '{name}' prompt", fmt(b.correct, percent=True) +
                f", mean log-odds of the correct answer {b.mean_log_odds_correct:+.2f}")
               for name, b in res.behaviour.items()]
    numbers.append(("questions: choosing the lying prompt / analysed", f"{res.n_selection} / {res.n_analysed}"))
    numbers.append(("lying prompt analysed", f"'{res.lie_variant}' (chosen on: {res.lie_variant_chosen_on})"))
    if res.model_lies:
        onset = res.onset
        headline = (f"When told to lie, the model does; patching in its honest state starts to restore the honest answer "
                    f"at layer {onset.layer} ({100 * onset.depth_fraction:.0f}% of the depth, 95% CI layers "
                    f"{onset.ci_low}-{onset.ci_high}), where the lie appears to be decided.")
        numbers += [("first layer restoring half the answer when patched", f"{onset.layer} "
                     f"(95% CI {onset.ci_low}-{onset.ci_high})")]
        numbers += [(f"layer {r.layer}: share of the answer restored by patching", fmt(r.recovery))
                    for r in res.layer_patching if abs(r.layer - onset.layer) <= 1]
        flips = [r.layer for r in res.probe_flip if r.lying_accuracy < 0.5 <= r.honest_accuracy]
        numbers.append(("layers where the truth probe flips below 50% on lies", ", ".join(map(str, flips)) or "none"))
        if res.head_patching:
            numbers.append(("heads restoring most when patched", ", ".join(
                f"L{r.layer}H{r.head} ({r.recovery:.2f})" for r in res.head_patching[:3])))
    else:
        headline = ("Told to lie, this model does not reliably give the wrong answer, so there is no lie to locate; "
                    "the layer analysis would only locate noise.")
    return Section(
        kind="lying", title="Where in the model is a lie decided?", headline=headline,
        figure_svg=run_svg(run.folder, res.plot) if res.model_lies else "", numbers=numbers,
        shows=["Whether the model follows an instruction to lie, and if so from which layer on the residual stream "
               "carries the switch from the true answer to the false one (Campbell et al.). The last layer "
               "always restores the whole answer when patched, so the layer named is where restoring starts."],
        does_not_show=["Spontaneous deception: the lie here is requested.",
                       "Anything about models that do lie when this one does not: a 135M-parameter model may not follow the instruction."],
        provenance=provenance(run.meta, str(run.folder)),
    )
