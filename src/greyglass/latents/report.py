"""Report sections (and terminal summaries) for the feature jobs: the feature database, a concept
across languages, and steering with one latent."""

from __future__ import annotations

from html import escape

from ..job import RunInfo
from ..report.figures import run_svg
from ..report.section import Section, fmt, provenance
from ..stats import Estimate
from ..steer.report import generation_rows
from .config import (BuildConfig, BuildResults, ConceptConfig, ConceptResults, SteerFeatureConfig,
                     SteerFeatureResults, TargetProbability)


def features_section(res: BuildResults, cfg: BuildConfig, run: RunInfo) -> Section:
    live = res.d_sae - res.dead_latents
    headline = (f"We read {res.n_tokens:,} tokens through the sparse autoencoder's {res.d_sae:,} features at "
                f"{res.site} and stored, for each, where it fires most and what it promotes; {live:,} of them fired "
                "at least once.")
    numbers = [("tokens read", f"{res.n_tokens:,}" + ("" if res.complete else " (interrupted before the end)")),
               ("latents", f"{res.d_sae:,}"), ("never fired", f"{res.dead_latents:,}"),
               ("latents active per token (mean L0)", f"{res.mean_l0:.1f}"),
               ("median firing density", f"{100 * res.median_density:.4f}%"),
               ("latents x tokens per second", f"{res.latent_tokens_per_second:,}"),
               ("feature database", str(run.folder / res.database))]
    if res.explanations:
        scored = [e.detection for e in res.explanations if e.detection is not None]
        numbers.append(("latents explained (mean detection score, 0.5 is chance)",
                        f"{len(res.explanations)}" + (f" ({sum(scored) / len(scored):.2f})" if scored else "")))
        numbers += [(f"latent {e.latent}", e.explanation + ("" if e.detection is None else
                                                             f" (detection {e.detection:.2f})"))
                    for e in res.explanations[:5]]
    return Section(
        kind="features", title="What the sparse autoencoder's features respond to", headline=headline, numbers=numbers,
        shows=["How often each feature fires and on which text; the database behind `greyglass features "
               "show/html/search` and the browser."],
        does_not_show=["What a feature does to the model's output: that needs steering (`greyglass steer-feature`).",
                       "That a feature means what its label or explanation says: both are read off its top contexts."],
        provenance=provenance(run.meta, str(run.folder)),
    )


def concept_heatmap_svg(res: ConceptResults, cell: int = 26) -> str:
    """Languages (rows) x ranked latents (columns), shaded by mean activation; outlined where it beats every control."""
    peak = max((v for r in res.ranked for v in r.concept_mean.values()), default=0.0) or 1.0
    left, top = 34, 40
    cells = []
    for x, r in enumerate(res.ranked):
        cells.append(f'<text x="{left + x * cell + cell / 2}" y="{top - 8}" font-size="10" text-anchor="middle">'
                     f'{r.latent}</text>')
        for y, lang in enumerate(res.languages):
            v = r.concept_mean[lang]
            stroke = ' stroke="#1d2433" stroke-width="2"' if lang in r.carries else ""
            cells.append(f'<rect x="{left + x * cell}" y="{top + y * cell}" width="{cell - 2}" height="{cell - 2}" '
                         f'fill="rgba(230,120,40,{v / peak:.2f})"{stroke}><title>{escape(lang)}, latent {r.latent}: '
                         f'{v:.3g}</title></rect>')
    labels = "".join(f'<text x="2" y="{top + y * cell + cell / 2 + 4}" font-size="11">{escape(lang)}</text>'
                     for y, lang in enumerate(res.languages))
    width, height = left + len(res.ranked) * cell + 10, top + len(res.languages) * cell + 10
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="concept activation by language">'
            f'<text x="{left}" y="12" font-size="11">latent</text>{labels}{"".join(cells)}</svg>')


def _heldout_counts(res: ConceptResults) -> str:
    return (f"{res.heldout.concept_sentences} concept and {res.heldout.control_sentences} control sentences, "
            "translations counted once")


def _concept_headline(res: ConceptResults) -> str:
    best = res.ranked[0] if res.ranked else None
    n = len(res.languages)
    if best is None or best.languages == 0:
        return f"No latent fires on '{res.description}' more than on every control sentence in any of {n} languages."
    return (f"Of all features, the one that fires on '{res.description}' in the most languages does so more "
            f"strongly than on any control sentence in {best.languages} of {n} languages." + _heldout_claim(res))


def _heldout_claim(res: ConceptResults) -> str:
    """Claim separation on sentences not used for ranking only when the interval excludes chance (0.5)."""
    held, counts = res.ranked[0].heldout_auroc, _heldout_counts(res)
    if held.lo != held.lo:  # NaN: too few held-out concept sentences for an interval
        return (f" On sentences not used to rank it ({counts}) its AUROC is {held.value:.2f}, too few held-out "
                "concept sentences for an interval, so no claim either way.")
    if held.lo > 0.5:
        return (f" On sentences not used to rank it ({counts}) it separates the concept from the controls: "
                f"AUROC {fmt(held, digits=2)}.")
    return (f" On sentences not used to rank it ({counts}) its AUROC {fmt(held, digits=2)} does not show that it "
            "separates the concept from the controls better than chance.")


def concept_section(res: ConceptResults, cfg: ConceptConfig, run: RunInfo) -> Section:
    n = len(res.languages)
    numbers = [(f"latent {r.latent}", f"carries it in {r.languages} of {n} languages ({', '.join(r.carries) or 'none'}); "
                f"mean margin over controls {r.mean_margin:.3g}; AUROC concept vs controls on held-out sentences "
                f"{fmt(r.heldout_auroc, digits=2)}") for r in res.ranked[:5]]
    numbers += [("held-out sentences", _heldout_counts(res)),
                ("NTREX-128 control sentences per language and side", str(res.ntrex_controls)),
                ("dashboards", str(run.folder / res.dashboards) if res.dashboards else
                 f"none: no feature database for {cfg.sae}; run `greyglass features build {cfg.sae}` first")]
    return Section(
        kind="features", title=f"A concept across languages: {res.concept}", headline=_concept_headline(res),
        numbers=numbers, figure_svg=concept_heatmap_svg(res) if res.ranked else "",
        shows=["Which features fire on the concept's sentences in each language more than on unrelated sentences."],
        does_not_show=["That a latent means the concept: a latent can beat the controls for another reason (names, "
                       "sentence form); read its dashboard.",
                       "Anything about languages or concepts not in the sentence set; a few sentences per language is "
                       "a small sample, and the held-out interval counts a sentence and its translations as one."],
        provenance=provenance(run.meta, str(run.folder)),
    )


def _steer_feature_headline(res: SteerFeatureResults) -> str:
    """A change is claimed only where a value's 95% interval lies wholly above or below the unsteered one."""
    base, words = res.baseline_p_target, ", ".join(repr(w) for w in res.target_words)
    raised = [r for r in res.effect if r.p_target.lo > base.hi]
    lowered = [r for r in res.effect if r.p_target.hi < base.lo]
    what = f"the chance that the next word is one of {words} over {res.n_prompts} neutral prompts"

    def moved(verb: str, r: TargetProbability) -> str:
        return (f"Setting feature {res.latent} to {r.value:g} ({res.mode}) {verb} {what} from {base.value:.2g} to "
                f"{r.p_target.value:.2g}, beyond both 95% intervals.")

    if raised:
        return moved("raises", max(raised, key=lambda r: r.p_target.value))
    if lowered:
        return moved("lowers", min(lowered, key=lambda r: r.p_target.value))
    return (f"Steering feature {res.latent} ({res.mode}, values {', '.join(f'{r.value:g}' for r in res.effect)}) "
            f"did not reliably change {what} (unsteered {base.value:.2g}): every interval overlaps the unsteered one.")


def _probability(p: Estimate) -> str:
    """Two significant digits: target-word probabilities run from 1e-5 to 1, so fixed decimals would show 0.000."""
    return f"{p.value:.2g} ({p.lo:.2g} to {p.hi:.2g})"


def steer_feature_section(res: SteerFeatureResults, cfg: SteerFeatureConfig, run: RunInfo) -> Section:
    numbers = [("P(target word next), unsteered", _probability(res.baseline_p_target))]
    numbers += [(f"P(target word next), {res.mode} value {r.value:g}", _probability(r.p_target)) for r in res.effect]
    numbers += generation_rows(res.generations, f"{res.mode} {res.value:g}")
    numbers += [("target words", ", ".join(map(repr, res.target_words))), ("where", res.site)]
    return Section(
        kind="steering", title=f"Steering with feature {res.latent}", headline=_steer_feature_headline(res),
        figure_svg=run_svg(run.folder, res.plot), numbers=numbers,
        shows=["How strongly the feature pushes the model toward the target words, on neutral prompts, and what "
               "greedy decoding writes with it."],
        does_not_show=["Whether the steered text is still fluent or on-topic beyond those words: read the generations.",
                       f"Effects on prompts unlike the {res.n_prompts} neutral ones measured."],
        provenance=provenance(run.meta, str(run.folder)),
    )
