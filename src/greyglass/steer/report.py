"""Report sections (and terminal summaries) for the steering jobs: side-by-side generations, a
built vector, and a vector's measured effect on held-out items."""

from __future__ import annotations

from ..job import RunInfo
from ..report.figures import run_svg
from ..report.section import Section, fmt, provenance
from .config import Comparison, EffectConfig, EffectResults, SteerConfig, SteerResults, VectorConfig, VectorResults


def generation_rows(generations: tuple[Comparison, ...], steered: str = "steered") -> list[tuple[str, str]]:
    """Numbers rows for replies without and with steering, labelled by their prompt (cut short: a long
    label would push every value of the terminal summary to the right)."""
    rows = []
    for g in generations:
        prompt = g.prompt if len(g.prompt) <= 40 else g.prompt[:37] + "..."
        rows += [(f"'{prompt}': unsteered", g.baseline), (f"'{prompt}': {steered}", g.steered)]
    return rows


def steer_section(res: SteerResults, cfg: SteerConfig, run: RunInfo) -> Section:
    n, changed = len(res.generations), res.changed
    where = ", ".join(res.sites)
    headline = (f"Adding the direction at {where}, {cfg.coef:g} typical residual norms long, changed the greedy reply "
                f"to {changed} of {n} prompt{'s' if n != 1 else ''}; the replies are below. A few generations "
                "are examples, not a measured effect.")
    numbers = generation_rows(res.generations)
    numbers += [(f"added vector's length at {site}", f"{res.added_norm[site]:.3g} ({abs(cfg.coef):g} x the typical "
                 f"norm {res.typical_norm[site]:.3g})") for site in res.sites]
    numbers += [("direction", f"{res.direction_kind} from {cfg.vector}"), ("coefficient unit", res.coef_unit)]
    return Section(
        kind="steering", title="What does the model write when steered?", headline=headline, numbers=numbers,
        shows=["What greedy decoding writes for these prompts with and without the direction added at every position."],
        does_not_show=["Whether the direction moves a behaviour in general: `greyglass steer-effect` measures that on "
                       "held-out items, with intervals.",
                       "Whether a change is the one intended, or keeps the text fluent: read the replies."],
        provenance=provenance(run.meta, str(run.folder)),
    )


def vector_section(res: VectorResults, cfg: VectorConfig, run: RunInfo) -> Section:
    ratio = res.norm / res.typical_norm
    return Section(
        kind="steering vector", title=f"A steering vector from {res.source}",
        headline=(f"A {res.method} vector from {res.n_pairs} contrast pairs ({res.source}) at {res.site}: the pairs "
                  f"differ by {ratio:.2g} typical residual norms there. Whether adding it changes behaviour is not "
                  "measured here."),
        numbers=[("contrast pairs", str(res.n_pairs)), ("where", res.site), ("method", res.method),
                 ("length as built", f"{res.norm:.3g}"),
                 ("typical residual norm at the site", f"{res.typical_norm:.3g}"),
                 ("direction folder (for steer --vector)", str(run.folder))]
                + ([("llama.cpp control vector (--control-vector-scaled FILE:COEF)", res.control_vector)]
                   if res.control_vector else []),
        shows=["The direction that separates the positive texts from the negative ones at this site, saved for "
               "`greyglass steer`, `steer-effect --vector`, `serve-model --steer` and the browser."],
        does_not_show=["That the direction is causal for the behaviour: `greyglass steer-effect` measures that on "
                       "items the vector was not built from.",
                       "That it captures only the intended difference: anything else that differs between the "
                       "positive and negative texts is in it too."],
        provenance=provenance(run.meta, str(run.folder)),
    )


def effect_section(res: EffectResults, cfg: EffectConfig, run: RunInfo) -> Section:
    rows = sorted(res.coefs, key=lambda r: r.coef)
    low, high = rows[0], rows[-1]
    moved = low.p_matching.hi < high.p_matching.lo or high.p_matching.hi < low.p_matching.lo
    items = f"{res.n_test} test items" if res.given_vector else f"{res.n_test} items not used to build it"
    headline = (f"Adding one direction inside the model changes its answers: the share of '{res.behavior}' answers goes "
                f"from {100 * low.p_matching.value:.0f}% at coefficient {low.coef:+g} to "
                f"{100 * high.p_matching.value:.0f}% at {high.coef:+g}, on {items}."
                if moved else
                f"Steering along this direction did not reliably change the model's '{res.behavior}' answers: the "
                f"95% intervals at coefficients {low.coef:+g} and {high.coef:+g} overlap.")
    return Section(
        kind="steering", title=f"Can we push the model towards '{res.behavior}'?", headline=headline,
        figure_svg=run_svg(run.folder, res.plot),
        numbers=[(f"coefficient {r.coef:+g}: probability of the behaviour's answer", fmt(r.p_matching, percent=True))
                 for r in rows]
        + [("held-out items (questions)", f"{res.n_test} ({res.n_test_questions})"), ("where", res.site),
           ("vector", f"{res.kind}, " + (f"given: {cfg.vector}" if res.given_vector
                                         else f"built from {res.n_build} other items")),
           ("coefficient unit", res.coef_unit)],
        shows=["That the direction is causal for this behaviour on two-choice questions, not only correlated with it."],
        does_not_show=["How steering changes free-form conversation, or other behaviours it may disturb."]
        + (["That the given vector was built from other items than these: only a vector built here is known to be."]
           if res.given_vector else []),
        provenance=provenance(run.meta, str(run.folder)),
    )
