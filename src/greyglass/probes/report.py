"""Evidence-report sections for probe runs: a layer sweep, and where a lie is decided."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..report.build import builder
from ..report.figures import run_svg
from ..report.section import Section, fmt, provenance


@builder("probe_sweep")
def sweep_section(config: dict[str, Any], results: dict[str, Any], folder: Path) -> Section:
    best = next(r for r in results["layers"] if r["layer"] == results["best_layer"])
    acc = best["accuracy"]
    majority = max(results["true_fraction"], 1 - results["true_fraction"])
    depth = f"{100 * results['best_depth_fraction']:.0f}% of the way up"
    if acc["ci_low"] > majority:
        headline = (f"A simple linear probe reads whether a '{results['data']}' statement is true from layer "
                    f"{best['layer']} ({depth}): {100 * acc['value']:.0f}% correct on {results['n_test']} statements it never saw.")
    else:
        headline = (f"No layer's probe reliably beats guessing on held-out '{results['data']}' statements "
                    f"(best: {100 * acc['value']:.0f}% at layer {best['layer']}, guessing gives {100 * majority:.0f}%).")
    return Section(
        kind="linear probe", title="Does the model represent whether a statement is true?", headline=headline,
        figure_svg=run_svg(folder, results),
        numbers=[(f"held-out accuracy at layer {best['layer']} (chosen on validation data)", fmt(acc, percent=True)),
                 ("AUROC at that layer", fmt(best["auroc"])),
                 ("true-positive rate at 1% false positives", fmt(best["tpr_at_1pct_fpr"], percent=True)),
                 ("accuracy from always guessing the commoner label", f"{100 * majority:.0f}%"),
                 ("statements: train / held-out", f"{results['n_train']} / {results['n_test']}"),
                 ("probe kind", results["kind"])],
        shows=["Whether the information is linearly readable inside the model at each layer."],
        does_not_show=["That the model uses this information, or 'believes' anything: a probe only reads.",
                       "That the probe reads truth in general: one trained on one kind of statement can fail on "
                       "others (see the transfer matrix, e.g. negated statements)."],
        provenance=provenance(config, str(folder)),
    )


@builder("probe_lying")
def lying_section(config: dict[str, Any], results: dict[str, Any], folder: Path) -> Section:
    numbers = [(f"answers correct, '{name}' prompt", fmt({"value": v["correct_fraction"], "ci_low": v["ci_low"],
                                                          "ci_high": v["ci_high"]}, percent=True))
               for name, v in results["behaviour"].items()]
    numbers.append(("questions: choosing the lying prompt / analysed", f"{results['n_selection']} / {results['n_analysed']}"))
    if results["model_lies"]:
        onset = results["onset"]
        headline = (f"When told to lie, the model does; patching in its honest state starts to restore the honest answer "
                    f"at layer {onset['layer']} ({100 * onset['depth_fraction']:.0f}% of the depth, 95% CI layers "
                    f"{onset['ci_low']}-{onset['ci_high']}), where the lie appears to be decided.")
        numbers += [("first layer restoring half the answer when patched", f"{onset['layer']} "
                     f"(95% CI {onset['ci_low']}-{onset['ci_high']})")]
        numbers += [(f"layer {r['layer']}: share of the answer restored by patching",
                     fmt({"value": r["recovery"], "ci_low": r["recovery_ci_low"], "ci_high": r["recovery_ci_high"]}))
                    for r in results["layer_patching"] if abs(r["layer"] - onset["layer"]) <= 1]
    else:
        headline = ("Told to lie, this model does not reliably give the wrong answer, so there is no lie to locate; "
                    "the layer analysis below would only locate noise.")
    return Section(
        kind="lying", title="Where in the model is a lie decided?", headline=headline,
        figure_svg=run_svg(folder, results) if results["model_lies"] else "", numbers=numbers,
        shows=["Whether the model follows an instruction to lie, and if so from which layer on the residual stream "
               "carries the switch from the true answer to the false one (Campbell et al.). The last layer "
               "always restores the whole answer when patched, so the layer named is where restoring starts."],
        does_not_show=["Spontaneous deception: the lie here is requested.",
                       "Anything about models that do lie when this one does not: a 135M-parameter model may not follow the instruction."],
        provenance=provenance(config, str(folder)),
    )
