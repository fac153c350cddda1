"""Evidence-report sections for SAE runs: how faithful the sparse autoencoder is.

The headline leads with what splicing the SAE in costs the model: the next-word loss increase
in nats (with its interval) and the KL to the clean model. CE loss recovered is shown against
mean ablation beside zero ablation, since zeroing a mid-depth layer is so destructive that
almost any SAE "recovers" most of it; explained variance comes last (a single large residual
dimension can push it near 100% on small models, see docs/sae.md).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..plots import bar_chart
from ..report.build import builder
from ..report.section import Section, fmt, provenance
from .evaluate import damage


def _eval_of(results: dict[str, Any]) -> dict[str, Any] | None:
    """The evaluation dict: a sae_eval run's results, or the demo's sae_train results["eval"]."""
    if "ce_loss_recovered" in results:
        return results
    return results.get("eval")


def _headline(r: dict[str, Any], d_sae: int | None, site: str) -> str:
    of = f" out of {d_sae:,}" if d_sae else ""
    increase = r.get("ce_increase", r["ce_sae"] - r["ce_clean"])
    where = "held-out text" if (r.get("heldout") or {}).get("verified") else "text not shown to be held out"
    return (f"With the sparse autoencoder spliced in at {site} (about {r['l0']:.0f} active features per token{of}), "
            f"the model predicts the next word {damage(r)} on {where}: loss up {increase:.2f} nats per token "
            f"({r['ce_clean']:.2f} -> {r['ce_sae']:.2f}, perplexity x{math.exp(increase):.2f}), "
            f"KL {r['kl_sae']:.2f} nats from the model's own predictions.")


def _recovered_row(r: dict[str, Any]) -> str:
    mean = r.get("ce_loss_recovered_mean")
    against_mean = f"{mean:.1%} vs mean ablation (CE {r['ce_mean']:.3f})" if mean is not None else "vs mean ablation not measured"
    return f"{against_mean}; {r['ce_loss_recovered']:.1%} vs zero ablation (CE {r['ce_zero']:.3f})"


def sae_section(config: dict[str, Any], results: dict[str, Any], folder: Path) -> Section:
    r = _eval_of(results)
    saes = config.get("saes") or []
    sae_cfg = saes[0] if saes else {}
    site = sae_cfg.get("hook_name") or config.get("site") or "its site"
    d_sae = sae_cfg.get("d_sae") or config.get("d_sae")
    if r is None:
        final = (results.get("final") or [{}])[0]
        return Section(
            kind="sparse autoencoder", title="A sparse autoencoder was trained",
            headline=f"A sparse autoencoder was trained on {results.get('tokens', 0):,} activations; it has not been "
            "evaluated on held-out text, so nothing is claimed about its quality.",
            numbers=[(k, f"{v:.4g}") for k, v in final.items() if isinstance(v, float)],
            shows=["Training figures only."], does_not_show=["How faithful the SAE is: run `greyglass sae eval`."],
            provenance=provenance(config, str(folder)))
    notes = []
    if r["explained_variance"] > 0.99 and r["ce_loss_recovered"] < 0.95:
        notes.append("Explained variance looks near-perfect, but on this model one residual dimension carries most "
                     "of the variance; the prediction-quality figure is the honest one.")
    heldout = r.get("heldout") or {"verified": False, "reason": "this run predates the held-out check"}
    if not heldout["verified"]:
        notes.append(f"The evaluation text is not shown to be held out ({heldout['reason']}): the SAE may have "
                     "trained on some of it, which flatters every figure here.")
    return Section(
        kind="sparse autoencoder",
        title="Can the model's layer be rewritten as a few readable features?",
        figure_svg=_density_svg(r),
        headline=_headline(r, d_sae, site),
        numbers=[
            ("next-word loss increase with the SAE spliced in (nats/token)", _increase(r)),
            ("KL from the model's own next-word predictions (nats/token)", _kl(r)),
            ("next-word loss: clean / with SAE", f"{r['ce_clean']:.3f} / {r['ce_sae']:.3f}"),
            ("CE loss recovered", _recovered_row(r)),
            ("active features per token (L0)", f"{r['l0']:.1f}" + (f" of {d_sae:,}" if d_sae else "")),
            ("explained variance", f"{r['explained_variance']:.1%}"),
            ("features that never fired (dead)", f"{r['dead_fraction']:.1%}"),
            ("features firing on over 10% of tokens (dense)", f"{r['dense_fraction']:.1%}"),
            ("held-out tokens evaluated" if heldout["verified"] else "tokens evaluated (not shown held out)",
             f"{r['n_tokens']:,}"),
        ],
        shows=["How much of what this layer does survives being rewritten as a sparse sum of features.",
               "Whether the features are used at all (dead) or too often to be specific (dense)."],
        does_not_show=["What any single feature means: see the feature dashboards.",
                       "That the features are the model's 'true' features: an SAE is one of many possible rewrites.",
                       "Anything about other layers."],
        provenance=provenance({**config, "corpus_fingerprint": config.get("corpus_fingerprint")}, str(folder)),
        notes=notes,
    )


def _increase(r: dict[str, Any]) -> str:
    ci = r.get("ce_increase_ci")
    return fmt(ci) if ci else f"{r['ce_sae'] - r['ce_clean']:.3f}"


def _kl(r: dict[str, Any]) -> str:
    ci = r.get("kl_sae_ci")
    return fmt(ci) if ci else f"{r['kl_sae']:.3f}"


def _density_svg(r: dict[str, Any]) -> str:
    """How often features fire: one bar per log10-rate bin, plus the features that never fired."""
    hist = r.get("density_histogram")
    if not hist:
        return ""
    edges = hist["log10_rate_edges"]
    labels = ["never"] + [f"1e{edges[i]:g}" for i in range(len(hist["counts"]))]
    return bar_chart(labels, [hist["never_fired"], *hist["counts"]], "How often each feature fires",
                     "features (by firing rate, from rarest)")


builder("sae_train")(sae_section)
builder("sae_eval")(sae_section)


def absorption_estimate(results: dict[str, Any], key: str) -> dict[str, float]:
    """A headline measure of a first-letter run (or a freq-experiment row) as an Estimate dict; NaN when no
    letter was scored."""
    value, ci = results.get(key), results.get(key + "_ci")
    nan = float("nan")
    return {"value": nan if value is None else value, "ci_low": ci[0] if ci else nan, "ci_high": ci[1] if ci else nan}


@builder("sae_absorption")
def absorption_section(config: dict[str, Any], results: dict[str, Any], folder: Path) -> Section:
    fraction = absorption_estimate(results, "mean_absorption_fraction")
    full = absorption_estimate(results, "full_absorption_rate")
    f1, scored = results["mean_probe_f1"], results.get("letters_scored", 0)
    if f1 < 0.6 or not scored:
        headline = (f"The model's first-letter information is too weak at {results['site']} (probe F1 {f1:.2f}, "
                    f"{scored} letters above the bar) to measure feature absorption there.")
    elif results["mean_k_sparse_f1"] < 0.5:
        headline = (f"The SAE has no clean 'first letter' features at {results['site']} (its best few features tell "
                    f"letters apart with F1 {results['mean_k_sparse_f1']:.2f}), so its absorption figures mean little.")
    elif fraction["value"] > 0.01:
        headline = (f"Feature absorption is present: on average {100 * fraction['value']:.1f}% of a word's first-letter "
                    "signal is carried by more specific features instead of the SAE's letter features, and on "
                    f"{100 * full['value']:.1f}% of words the letter features stay silent altogether.")
    else:
        headline = (f"We measured little feature absorption (mean absorption fraction {100 * fraction['value']:.1f}%): "
                    "where the model knows a word's first letter, the SAE's letter features usually carry it.")
    numbers = [("mean absorption fraction (share of the letter signal carried by other features; mean over letters)",
                fmt(fraction, percent=True)),
               ("full absorption (letter features silent, one other feature carries it; mean over letters)",
                fmt(full, percent=True)),
               ("letter features per letter (split features)", fmt(absorption_estimate(results, "mean_split_features"), 2)),
               ("first-letter probe quality (mean test F1)", f"{f1:.2f}"),
               ("the SAE's best few latents as a letter classifier (mean F1)", f"{results['mean_k_sparse_f1']:.2f}"),
               ("letters scored; probe-right test words", f"{scored}; {results.get('probe_right_words', 0)}"),
               ("words sampled", str(results["n_words"]))]
    numbers += [(f"latent {a['latent']} absorbs '{a['letter'].upper()}'", f"{a['words']} words, e.g. {', '.join(a['examples'][:4])}")
                for a in results.get("absorbing_latents", [])[:5]]
    return Section(
        kind="feature absorption", title="Do the SAE's features quietly miss cases?", headline=headline, numbers=numbers,
        shows=["How often a general feature fails to fire because a more specific one took over its job "
               "(Chanin et al., 'A is for Absorption', as SAEBench measures it), on a task with known ground truth; "
               "intervals resample letters."],
        does_not_show=["Absorption of other concepts than first letters.",
                       "That features without absorption mean what their labels say."],
        provenance=provenance(config, str(folder)),
    )


@builder("sae_meta")
def meta_section(config: dict[str, Any], results: dict[str, Any], folder: Path) -> Section:
    fve = results["fraction_variance_explained"]
    headline = (f"Many of the SAE's {results['d_sae']:,} features are built from shared parts: "
                f"{results['meta_latents']} 'meta-features' explain {100 * fve:.0f}% of how the features are written."
                if fve >= 0.5 else
                f"The SAE's features are mostly not combinations of a few shared parts: {results['meta_latents']} "
                f"meta-features explain only {100 * fve:.0f}% of how they are written.")
    numbers = [("variance of the decoder directions explained", f"{100 * fve:.1f}%"),
               ("meta-features used per feature (mean)", f"{results['mean_meta_latents_per_latent']:.1f}"),
               ("features flagged as compositions of several meta-features",
                f"{results['n_compositional']} ({100 * results['fraction_compositional']:.1f}%)")]
    numbers += [(f"meta-feature {m['meta_latent']} ({m['n_members']} members)",
                 "promotes " + ", ".join(t.strip() for t in m["tokens"]) if "tokens" in m else "")
                for m in results["meta"][:5]]
    return Section(
        kind="meta-SAE", title="Are the SAE's features made of smaller parts?", headline=headline, numbers=numbers,
        shows=["Whether the SAE's feature directions decompose into a few shared components (Bussmann et al.)."],
        does_not_show=["That the components are meaningful on their own: read their member features first."],
        provenance=provenance(config, str(folder)),
    )


def _splice_cost(r: dict[str, Any]) -> str:
    """A table row's cost of splicing the SAE in: loss increase and KL first (rows from before they were kept have
    only CE recovered against zero ablation)."""
    zero = f"{100 * r['ce_loss_recovered']:.1f}% vs zero ablation"
    if "ce_increase" not in r:
        return f"CE recovered {zero}"
    return (f"loss +{r['ce_increase']:.3f} nats, KL {r['kl_sae']:.3f}; CE recovered "
            f"{100 * r['ce_loss_recovered_mean']:.1f}% vs mean ablation, {zero}")


@builder("sae_freq_experiment")
def freq_experiment_section(config: dict[str, Any], results: dict[str, Any], folder: Path) -> Section:
    rows = results["rows"]
    def ci(r: dict[str, Any]) -> dict[str, float]:
        return absorption_estimate(r, "mean_absorption_fraction")

    pairs = [(plain, freq) for plain in rows for freq in rows
             if freq["variant"] == plain["variant"] + "+freq" and freq["target_l0"] == plain["target_l0"]]
    lower = sum(ci(f).get("ci_high", 1.0) < ci(p).get("ci_low", 0.0) for p, f in pairs)
    higher = sum(ci(f).get("ci_low", 0.0) > ci(p).get("ci_high", 1.0) for p, f in pairs)
    shift = max(abs(f["explained_variance"] - p["explained_variance"]) for p, f in pairs)
    if lower and not higher:
        headline = (f"Charging rare features more than common ones lowered feature absorption in {lower} of {len(pairs)} "
                    "comparisons at matched sparsity, beyond the intervals.")
    elif higher and not lower:
        headline = (f"Charging rare features more than common ones raised feature absorption in {higher} of {len(pairs)} "
                    "comparisons at matched sparsity, beyond the intervals.")
    else:
        headline = (f"Charging rare features more than common ones made no difference to feature absorption that this run "
                    f"can detect ({len(pairs)} comparisons at matched sparsity); explained variance moved by at most {shift:.3f}.")
    numbers = [(f"{r['variant']}, L0 {r['l0']:.0f} (target {r['target_l0']})",
                f"absorption fraction {fmt(ci(r), percent=True)}; {_splice_cost(r)}; explained variance "
                f"{r['explained_variance']:.3f}; dead {100 * r['dead_fraction']:.1f}%; dense {100 * r['dense_fraction']:.1f}%")
               for r in rows]
    figures = [folder / name for name in ("frontier.svg", "absorption.svg")]
    return Section(
        kind="frequency-aware sparsity", title="Does making common features cheaper stop features quietly missing cases?",
        headline=headline, numbers=numbers, figure_svg="".join(p.read_text() for p in figures if p.exists()),
        shows=["SAEs trained on the same data with and without a cost that makes often-used features cheaper to "
               "switch on, compared on reconstruction, the model's loss and first-letter absorption."],
        does_not_show=["Other seeds, sites, models or SAE widths: one run, one layer.",
                       "Absorption of concepts other than first letters."],
        provenance=provenance(config, str(folder)),
    )
