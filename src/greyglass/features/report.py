"""Evidence-report sections for feature runs: statistics (+ the demo's bridge concept), concepts, steering."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from ..report.build import builder
from ..report.section import Section, fmt, provenance
from .concept import heldout_counts
from .steer import effect_svg


def concept_heatmap_svg(concept: dict[str, Any], cell: int = 26) -> str:
    """Languages (rows) x ranked latents (columns), shaded by mean activation; outlined where it beats every control."""
    ranked, langs = concept["ranked"], concept["languages"]
    peak = max((v for r in ranked for v in r["concept_mean"].values()), default=0.0) or 1.0
    left, top = 34, 40
    cells = []
    for x, r in enumerate(ranked):
        cells.append(f'<text x="{left + x * cell + cell / 2}" y="{top - 8}" font-size="10" text-anchor="middle">'
                     f'{r["latent"]}</text>')
        for y, lang in enumerate(langs):
            v = r["concept_mean"][lang]
            stroke = ' stroke="#1d2433" stroke-width="2"' if lang in r["carries"] else ""
            cells.append(f'<rect x="{left + x * cell}" y="{top + y * cell}" width="{cell - 2}" height="{cell - 2}" '
                         f'fill="rgba(230,120,40,{v / peak:.2f})"{stroke}><title>{escape(lang)}, latent {r["latent"]}: '
                         f'{v:.3g}</title></rect>')
    labels = "".join(f'<text x="2" y="{top + y * cell + cell / 2 + 4}" font-size="11">{escape(lang)}</text>'
                     for y, lang in enumerate(langs))
    width, height = left + len(ranked) * cell + 10, top + len(langs) * cell + 10
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="concept activation by language">'
            f'<text x="{left}" y="12" font-size="11">latent</text>{labels}{"".join(cells)}</svg>')


def _concept_numbers(concept: dict[str, Any]) -> list[tuple[str, str]]:
    n = len(concept["languages"])
    return [(f"latent {r['latent']}", f"carries it in {r['languages']} of {n} languages "
             f"({', '.join(r['carries']) or 'none'}); mean margin over controls {r['mean_margin']:.3g}; "
             f"{_auroc_text(r)}")
            for r in concept["ranked"][:5]]


def _auroc_text(latent: dict[str, Any]) -> str:
    """The held-out AUROC with its interval; runs from before the split only have the in-sample one."""
    if "heldout_auroc" in latent:
        return f"AUROC concept vs controls on held-out sentences {fmt(latent['heldout_auroc'], digits=2)}"
    return f"AUROC concept vs controls {latent.get('mean_auroc', float('nan')):.2f} (in-sample: the ranking sentences)"


_CONCEPT_LIMITS = [
    "That a latent means the concept: a latent can beat the controls for another reason (names, sentence form); "
    "read its dashboard.",
    "Anything about languages or concepts not in the sentence set; a few sentences per language is a small sample, "
    "and the held-out interval counts a sentence and its translations as one.",
]


def _concept_headline(concept: dict[str, Any]) -> str:
    best = concept["ranked"][0] if concept["ranked"] else None
    n = len(concept["languages"])
    if best is None or best["languages"] == 0:
        return f"No latent fires on '{concept['description']}' more than on every control sentence in any of {n} languages."
    return (f"Of all features, the one that fires on '{concept['description']}' in the most languages does so more "
            f"strongly than on any control sentence in {best['languages']} of {n} languages."
            + _heldout_claim(concept, best))


def _heldout_claim(concept: dict[str, Any], best: dict[str, Any]) -> str:
    """Claim separation on sentences not used for ranking only when the interval excludes chance (0.5)."""
    held = best.get("heldout_auroc")
    if held is None:
        return ""
    if held["ci_low"] != held["ci_low"]:  # NaN: too few held-out concept sentences for an interval
        return (f" On sentences not used to rank it ({heldout_counts(concept)}) its AUROC is {held['value']:.2f}, "
                "too few held-out concept sentences for an interval, so no claim either way.")
    if held["ci_low"] > 0.5:
        return (f" On sentences not used to rank it ({heldout_counts(concept)}) it separates the concept from the "
                f"controls: AUROC {fmt(held, digits=2)}.")
    return (f" On sentences not used to rank it ({heldout_counts(concept)}) its AUROC {fmt(held, digits=2)} does not "
            "show that it separates the concept from the controls better than chance.")


@builder("features")
def features_section(config: dict[str, Any], results: dict[str, Any], folder: Path) -> Section:
    concept = results.get("bridge_concept")
    numbers = [("tokens read", f"{results.get('n_tokens', 0):,}"), ("latents", f"{results.get('d_sae', 0):,}"),
               ("never fired", f"{results.get('dead_latents', 0):,}"),
               ("latents active per token (mean L0)", f"{results.get('mean_l0', 0):.1f}")]
    headline = (f"We read {results.get('n_tokens', 0):,} tokens through the sparse autoencoder's "
                f"{results.get('d_sae', 0):,} features and stored, for each, where it fires most and what it promotes.")
    if concept:
        headline += " " + _concept_headline(concept)
        numbers += _concept_numbers(concept)
    return Section(
        kind="features", title="What the sparse autoencoder's features respond to", headline=headline,
        numbers=numbers, figure_svg=concept_heatmap_svg(concept) if concept and concept["ranked"] else "",
        shows=["How often each feature fires and on which text; the database behind `greyglass features show/html/search`.",
               "Whether any single feature tracks the Golden Gate Bridge across languages, against control sentences."]
        if concept else ["How often each feature fires and on which text."],
        does_not_show=["What a feature does to the model's output: that needs steering.", *(_CONCEPT_LIMITS if concept else [])],
        provenance=provenance(config, str(folder)),
    )


@builder("features_concept")
def concept_section(config: dict[str, Any], results: dict[str, Any], folder: Path) -> Section:
    return Section(
        kind="features", title=f"A concept across languages: {results['concept']}", headline=_concept_headline(results),
        numbers=_concept_numbers(results), figure_svg=concept_heatmap_svg(results) if results["ranked"] else "",
        shows=["Which features fire on the concept's sentences in each language more than on unrelated sentences."],
        does_not_show=_CONCEPT_LIMITS, provenance=provenance(config, str(folder)),
    )


@builder("steer_feature")
def steer_section(config: dict[str, Any], results: dict[str, Any], folder: Path) -> Section:
    effect = results["effect"]
    best = max(effect, key=lambda r: r["p_target"]["value"])
    words = ", ".join(repr(w) for w in results["target_words"])
    return Section(
        kind="steering", title=f"Steering with feature {config.get('latent')}",
        headline=f"Setting feature {config.get('latent')} to {best['value']:g} ({results['mode']}) changed the chance "
                 f"that the next word is one of {words} from {results['baseline_p_target']:.2g} to "
                 f"{best['p_target']['value']:.2g}.",
        numbers=[(f"value {r['value']:g}", fmt(r["p_target"])) for r in effect],
        figure_svg=effect_svg(effect),
        shows=["How strongly the feature pushes the model toward the concept's words, on neutral prompts."],
        does_not_show=["Whether the steered text is still fluent or on-topic beyond those words: read the generations.",
                       "Effects on prompts unlike the eight neutral ones measured."],
        provenance=provenance(config, str(folder)),
    )
