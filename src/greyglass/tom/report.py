"""The report section (and terminal summary) of `greyglass tom`: what the model answers about an agent's
belief and about reality, where probes read each, and what steering along the belief direction does."""

from __future__ import annotations

from ..job import RunInfo
from ..report.figures import run_svg
from ..report.section import Section, fmt, provenance
from .config import Depth, SteerChange, TomConfig, TomResults
from .stories import CONDITIONS


def _pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def answers_sentence(res: TomResults) -> str:
    fb, tb = res.accuracy("belief", "false_belief").correct, res.accuracy("belief", "true_belief").correct
    if res.verdict == "tracks_belief":
        return (f"The model answers for the agent's belief: asked what the agent thinks, it picks the right state in "
                f"{_pct(fb.value)} of false-belief stories and {_pct(tb.value)} of true-belief ones")
    if res.verdict == "reality_only":
        return (f"The model does not track belief: asked what the agent thinks, it names the real state in both "
                f"versions, so it is right on only {_pct(fb.value)} of false-belief stories")
    return (f"The evidence does not show the model tracking belief: on false-belief stories its belief answers are "
            f"right {_pct(fb.value)} of the time (95% CI {_pct(fb.lo)}-{_pct(fb.hi)}), not clearly above chance")


def probes_sentence(res: TomResults) -> str:
    b, r = res.belief_depth, res.reality_depth
    if b.layer is None and r.layer is None:
        return "no layer's probe reads either the agent's belief or reality above chance"
    if b.layer is None:
        return (f"a probe reads reality from layer {r.layer} ({_pct(r.fraction or 0)} of the depth), but no layer's "
                "probe reads the agent's belief above chance")
    if r.layer is None:
        return (f"a probe reads the agent's belief from layer {b.layer} ({_pct(b.fraction or 0)} of the depth), but "
                "no layer's probe reads reality above chance")
    both = (f", both at once at {len(res.both_layers)} layer(s) ({_layer_list(res.both_layers)})"
            if res.both_layers else ", never both at the same layer")
    return (f"probes read the agent's belief from layer {b.layer} ({_pct(b.fraction or 0)} of the depth) and reality "
            f"from layer {r.layer} ({_pct(r.fraction or 0)}){both}")


def _layer_list(layers: tuple[int, ...]) -> str:
    return ", ".join(map(str, layers[:6])) + (", ..." if len(layers) > 6 else "")


def steering_effect(res: TomResults) -> SteerChange | None:
    """The largest belief-direction change whose interval excludes 0 and which also differs, the same way,
    from the random direction's at the same coefficient (paired per story); None when there is none."""
    def clear(e, sign: float) -> bool:
        return e is not None and (e.lo > 0 if sign > 0 else e.hi < 0)

    specific = [r for r in res.steering if r.direction == "belief" and (r.change.lo > 0 or r.change.hi < 0)
                and clear(r.vs_random, r.change.value)]
    return max(specific, key=lambda r: abs(r.change.value), default=None)


def tracking(res: TomResults) -> tuple[str, str]:
    """In plain words: (what the model tracks, what it does not), in its answers and inside."""
    reality_ok = all(res.accuracy("reality", c).correct.lo > 0.5 for c in CONDITIONS)
    belief_ok, b, r = res.verdict == "tracks_belief", res.belief_depth.layer, res.reality_depth.layer
    rows = [(reality_ok, "reality, in its answers"), (belief_ok, "the agent's belief, in its answers"),
            (b is not None, f"the agent's belief, inside (a probe reads it from layer {b})" if b is not None
             else "the agent's belief, inside (no probe reads it)"),
            (r is not None, f"reality, inside (from layer {r})" if r is not None else "reality, inside (no probe reads it)")]
    return ("; ".join(text for ok, text in rows if ok) or "nothing measured here",
            "; ".join(text for ok, text in rows if not ok) or "nothing measured here fails")


def steering_note(res: TomResults) -> str:
    effect = steering_effect(res)
    if effect is None:
        return (f"Steering along the belief direction at layer {res.steer_layer} moves belief answers no more "
                "reliably than a random direction of the same norm.")
    note = (f"Steering along the belief direction at layer {res.steer_layer} ({effect.coef:+g}) changes the "
            f"probability of the right belief answer in {effect.condition.replace('_', '-')} stories by "
            f"{fmt(effect.change)}, more than a random direction of the same norm does")
    other = next(r for r in res.steering if r.direction == "belief" and r.coef == effect.coef
                 and r.condition != effect.condition)
    if other.change.value * effect.change.value < 0 and (other.change.lo > 0 or other.change.hi < 0):
        # the right belief answer differs between the versions only where belief and reality part, so
        # mirrored changes mean the direction moves the answer towards one state in both versions
        return (f"{note}, and the other way in {other.condition.replace('_', '-')} stories ({fmt(other.change)}): it "
                "pushes the answer towards one of the two states in both versions, not towards the agent's view.")
    return note + "."


def tom_section(res: TomResults, cfg: TomConfig, run: RunInfo) -> Section:
    tracks, lacks = tracking(res)
    numbers = [("what the model tracks", tracks), ("what it is not shown to track", lacks)]
    numbers += [(f"{a.question} question, {a.condition.replace('_', ' ')}: right answer likelier",
                f"{fmt(a.correct, percent=True)}, P(right) {fmt(a.p_correct)}") for a in res.behaviour]
    numbers += [("stories: train / validation / test (for probes and steering)",
                 f"{res.n_train} / {res.n_validation} / {res.n_test} from {res.n_templates} templates"),
                ("belief decodable from", _depth(res.belief_depth)), ("reality decodable from", _depth(res.reality_depth)),
                ("layers where both are decodable", _layer_list(res.both_layers) or "none")]
    best = max(res.layers, key=lambda r: r.belief.value)
    numbers += [(f"layer {best.layer} (best belief probe): belief / reality",
                 f"{fmt(best.belief, percent=True)} / {fmt(best.reality, percent=True)}"),
                (f"layer {best.layer} controls: shuffled labels / agent's gender",
                 f"{fmt(best.shuffled, percent=True)} / {fmt(best.irrelevant, percent=True)}")]
    numbers += [(f"head L{h.layer}H{h.head}: belief / reality",
                 f"{fmt(h.belief, percent=True)} / {fmt(h.reality, percent=True)}") for h in res.heads[:3]]
    numbers += [(f"steer {r.direction} {r.coef:+g} at layer {res.steer_layer}, {r.condition.replace('_', ' ')}: "
                 "change in P(right belief answer)", fmt(r.change) + (f", vs random {fmt(r.vs_random)}" if r.vs_random else ""))
                for r in res.steering]
    return Section(
        kind="theory of mind", title="Does the model keep track of what someone else believes?",
        headline=f"{answers_sentence(res)}; {probes_sentence(res)}.",
        figure_svg=run_svg(run.folder, res.probe_plot), numbers=numbers,
        shows=["Whether the model's answers follow what the agent saw (belief) or what is true (reality), on "
               "generated stories where the two differ only in the false-belief version.",
               "At which layers a linear probe reads the agent's belief and reality on stories it never saw "
               "(Zhu et al. 2024), against shuffled labels and an irrelevant story feature."],
        does_not_show=["That the model uses what the probes read: a probe only reads; steering is the causal test.",
                       "Theory of mind in general: one kind of story (an unseen change of location or state), "
                       "templated English text, and two candidate answers."],
        notes=[steering_note(res)], provenance=provenance(run.meta, str(run.folder)))


def _depth(d: Depth) -> str:
    return "no layer" if d.layer is None else f"layer {d.layer} ({_pct(d.fraction)} of the depth)"
