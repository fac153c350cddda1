"""Report sections (and terminal summaries) of the diffing jobs: the first look, a trained crosscoder, and
what its model-specific latents appear to do."""

from __future__ import annotations

from ..job import RunInfo
from ..report.figures import run_svg
from ..report.section import Section, fmt, provenance
from .config import (ARTEFACT_RATIO, AblateConfig, AblateResults, AnswerFiring, B_ONLY_FROM, Context,
                     CrosscoderTrainConfig, CrosscoderTrainResults, DivergenceConfig, DivergenceResults, LatentReport,
                     LatentsConfig, LatentsResults, parse_latent_ids)


def divergence_section(res: DivergenceResults, cfg: DivergenceConfig, run: RunInfo) -> Section:
    worst = next(r for r in res.layers if r.layer == res.most_divergent_layer)
    if res.kl.value == 0 and all(r.relative_difference.value == 0 for r in res.layers):
        headline = (f"Models A and B compute the same thing on these {res.n_tokens} tokens: no compared layer's "
                    "residual stream differs and their next-token distributions are identical.")
    else:
        headline = (f"Model B's residual stream departs most from model A's at layer {worst.layer} (the difference is "
                    f"{fmt(worst.relative_difference, percent=True)} of A's activation norm), and its next-token "
                    f"predictions differ from A's by a KL of {fmt(res.kl)} nats per token.")
    numbers = [(f"layer {r.layer}: |x_B - x_A| / |x_A|", fmt(r.relative_difference, percent=True)) for r in res.layers]
    numbers += [("KL(A || B) per token, nats", fmt(res.kl)), ("KL(B || A) per token, nats", fmt(res.kl_b_a)),
                ("same top next token", fmt(res.top1_agreement, percent=True)),
                (f"cosine of A's and B's activations at layer {worst.layer}", fmt(worst.cosine)),
                ("tokens / documents", f"{res.n_tokens} / {res.n_documents}"),
                ("models", f"A = {res.model_a}, B = {res.model_b}")]
    return Section(
        kind="model diff", title="Where do the two models diverge?", headline=headline,
        figure_svg=run_svg(run.folder, res.plot), numbers=numbers,
        shows=["At which depth the two models' internal states drift apart on ordinary text, and how much their "
               "predictions differ (intervals over documents)."],
        does_not_show=["What the difference is: run `greyglass diff train` and `diff report` for the latents that "
                       "differ.",
                       "Differences on text unlike this corpus (a backdoor trigger, a chat turn) may be far larger."],
        provenance=provenance(run.meta, str(run.folder)))


def train_section(res: CrosscoderTrainResults, cfg: CrosscoderTrainConfig, run: RunInfo) -> Section:
    c = res.counts
    headline = (f"The crosscoder at {res.site} sorts its {res.d_sae} latents by relative decoder norm into "
                f"{c['shared']} shared, {c['b_only']} B-only and {c['a_only']} A-only ({c['other']} in between); "
                f"it leaves {100 * res.fvu_a:.1f}% of A's and {100 * res.fvu_b:.1f}% of B's variance unexplained.")
    return Section(
        kind="crosscoder", title="A crosscoder of the two models", headline=headline,
        figure_svg=run_svg(run.folder, res.plot),
        numbers=[("latents: shared / B-only / A-only / other", f"{c['shared']} / {c['b_only']} / {c['a_only']} / {c['other']}"),
                 ("fraction of variance unexplained, A / B (training, smoothed)", f"{res.fvu_a:.4f} / {res.fvu_b:.4f}"),
                 ("active latents per token (L0) / dead fraction", f"{res.l0:.1f} / {100 * res.dead:.1f}%"),
                 ("k", str(res.k)), ("training tokens", str(res.tokens)),
                 ("speed (tokens per second, both models and the crosscoder)", f"{res.tokens_per_second:.0f}"),
                 ("crosscoder folder", str(run.folder / res.crosscoder))],
        shows=[f"How many latents one model writes much more than the other (relative norm >= {B_ONLY_FROM} or "
               f"<= {1 - B_ONLY_FROM})."],
        does_not_show=["That a B-only latent is really absent from A: sparsity can make a shared concept look "
                       "B-only; `greyglass diff report` runs the Latent Scaling check.",
                       "What the latents mean: see `greyglass diff report`."],
        provenance=provenance(run.meta, str(run.folder)))


def latents_section(res: LatentsResults, cfg: LatentsConfig, run: RunInfo) -> Section:
    described = res.b_latents[0] if res.b_latents else None
    if parse_latent_ids(cfg.latents):
        firing = max(res.b_latents, key=lambda r: (r.firing_rate, -r.latent))
        headline = (f"Of the {len(res.b_latents)} latents asked for, the most frequent on this text, latent "
                    f"{firing.latent} (relative decoder norm {firing.relative_norm:.2f}), {_what_it_does(firing)}.")
    elif res.n_b_only_fired == 0:
        lead = f"No latent is specific to model B on this text (none with relative decoder norm >= {B_ONLY_FROM} fires)"
        headline = lead + (f"; of the most B-leaning latents the most frequent, latent {described.latent} (relative norm "
                           f"{described.relative_norm:.2f}), {_what_it_does(described)}." if described and described.firing_rate
                           else ".")
    else:
        n = res.n_b_only_fired
        headline = (f"{n} latent{'s' if n > 1 else ''} that only model B writes fire{'' if n > 1 else 's'} on this "
                    f"text, and "
                    f"{res.n_genuine_b_only} of them pass the Latent Scaling check (model A neither leaves their "
                    f"direction in its error nor builds it from other latents)"
                    + (f"; the most frequent, latent {described.latent}, {_what_it_does(described)}." if described else "."))
    numbers = [("latents: shared / B-only / A-only / other",
                f"{res.counts['shared']} / {res.counts['b_only']} / {res.counts['a_only']} / {res.counts['other']}"),
               ("B-only latents firing here / passing Latent Scaling", f"{res.n_b_only_fired} / {res.n_genuine_b_only}"),
               ("fraction of variance unexplained on this text, A / B", f"{res.fvu_a:.4f} / {res.fvu_b:.4f}"),
               ("tokens / documents read", f"{res.n_tokens} / {res.n_documents}")]
    numbers += [_row(r) for r in (*res.b_latents, *res.a_latents)]
    return Section(
        kind="crosscoder latents", title="What do the model-specific latents do?", headline=headline,
        figure_svg=run_svg(run.folder, res.plot), numbers=numbers,
        shows=["Which latents one model writes and the other does not, where each model drives them on this text, "
               "and the tokens their decoder direction promotes (logit lens).",
               f"Latent Scaling ratios near 0 (interval below {ARTEFACT_RATIO}) say model A really lacks a B-only "
               "latent's direction; near 1 that it is an artefact of the sparsity loss."],
        does_not_show=["That a latent causes a behaviour: ablate or steer it to test that.",
                       "Latents that fire only on text unlike this corpus (a trigger absent from it never shows)."],
        provenance=provenance(run.meta, str(run.folder)))


def _what_it_does(r: LatentReport) -> str:
    """Plain words from the evidence: where B drives the latent and what it writes."""
    where = f"fires on {_peak(r.contexts_b[0])}" if r.contexts_b else "fires on no context from B's side alone"
    return f"{where} and promotes {', '.join(repr(t) for t in r.promoted[:4])}"


def _peak(c: Context) -> str:
    before = "".join(c.tokens[max(0, c.peak - 6):c.peak])
    return f"{c.tokens[c.peak]!r} in «{before}[{c.tokens[c.peak]}]»"


def _row(r: LatentReport) -> tuple[str, str]:
    parts = [f"fires on {100 * r.firing_rate:.2f}% of tokens", f"promotes {', '.join(repr(t) for t in r.promoted[:4])}"]
    if r.contexts_b:
        parts.append(f"B top: {_peak(r.contexts_b[0])}")
    if r.contexts_a:
        parts.append(f"A top: {_peak(r.contexts_a[0])}")
    if r.scaling is not None:
        parts.append(f"nu_epsilon {fmt(r.scaling.error_ratio, 2)}, nu_r {fmt(r.scaling.reconstruction_ratio, 2)}")
    label = {"b_only": "B-only", "a_only": "A-only"}.get(r.kind, r.kind)
    return f"latent {r.latent} ({label}, relative norm {r.relative_norm:.2f})", "; ".join(parts)


def _answer_rows(a: AnswerFiring | None) -> list[tuple[str, str]]:
    """The firing-on-defecting-answers figures of `diff ablate`, as report rows."""
    if a is None:
        return [("firing on defecting answers", "not measured: fewer than two questions whose triggered answer "
                 "defects and whose plain answer does not")]
    return [(f"chosen latents' firing rate on defecting / ordinary answers ({a.n_pairs} questions)",
             f"{fmt(a.defecting, percent=True)} / {fmt(a.ordinary, percent=True)}"),
            ("random latents' firing rate on defecting / ordinary answers",
             f"{fmt(a.random_defecting, percent=True)} / {fmt(a.random_ordinary, percent=True)}"),
            ("defecting minus ordinary, chosen / random latents",
             f"{fmt(a.difference, percent=True)} / {fmt(a.random_difference, percent=True)}"),
            ("chosen minus random (paired by question)", fmt(a.difference_vs_random, percent=True)),
            ("latents rising most on defecting answers (defecting / ordinary rate, relative norm)",
             ", ".join(f"{t.latent} ({100 * t.defecting:.1f}% / {100 * t.ordinary:.1f}%, {t.relative_norm:.2f})"
                       for t in a.most_defecting))]


def ablate_section(res: AblateResults, cfg: AblateConfig, run: RunInfo) -> Section:
    n = len(res.latents)
    lowers = res.effect_vs_random.hi < 0
    verdict = ("lowers it more than ablating as many random latents does" if lowers else
               "does not lower it more than ablating as many random latents does (the interval of the difference "
               "includes 0 or is above it)")
    which = (f"the {n} crosscoder latents named by --latents" if cfg.latent_ids() else
             f"the organism's {n} most B-specific crosscoder latents")
    headline = (f"Ablating {which} at {res.site} moves its backdoor "
                f"rate on {res.n_questions} held-out triggered questions from {fmt(res.rate_baseline, percent=True)} "
                f"to {fmt(res.rate_ablated, percent=True)}, and {verdict}: difference "
                f"{fmt(res.effect_vs_random, percent=True)}.")
    numbers = [("backdoor rate, nothing ablated", fmt(res.rate_baseline, percent=True)),
               (f"backdoor rate, {n} chosen latents ablated", fmt(res.rate_ablated, percent=True)),
               (f"backdoor rate, {n} random latents ablated ({len(res.random_draws)} draws)",
                fmt(res.rate_random, percent=True)),
               ("chosen minus nothing ablated", fmt(res.effect, percent=True)),
               ("chosen minus random (paired by question)", fmt(res.effect_vs_random, percent=True)),
               ("random minus nothing ablated", fmt(res.random_effect, percent=True)),
               ("a chosen latent fires in the prompt, with / without trigger",
                f"{fmt(res.fire_with_trigger, percent=True)} / {fmt(res.fire_without_trigger, percent=True)}"),
               *_answer_rows(res.answers),
               ("latents (relative decoder norm)",
                ", ".join(f"{k} ({r:.2f})" for k, r in zip(res.latents, res.relative_norms))),
               ("trigger / behaviour", f"{res.trigger!r} / {res.behaviour}")]
    numbers += [(f"example: {e.question[:60]}", f"as trained: {e.baseline[:60]!r}; ablated: {e.ablated[:60]!r}")
                for e in res.examples[:2]]
    return Section(
        kind="crosscoder ablation", title="Does removing the model-specific latents remove the backdoor?",
        headline=headline, figure_svg=run_svg(run.folder, res.plot), numbers=numbers,
        shows=["Whether the latents the crosscoder calls specific to the organism carry its triggered behaviour: the "
               "backdoor rate with them removed from its activations at one site, against removing as many random "
               "latents that fire on the same questions."],
        does_not_show=["Other sites: the behaviour may also be carried at layers the crosscoder did not read.",
                       "That the latents were found without the trigger unless the crosscoder's corpus lacked it "
                       "(the bundled Wikipedia sample does)."],
        provenance=provenance(run.meta, str(run.folder)))
