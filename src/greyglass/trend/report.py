"""The report section (and terminal summary) of a trend run, and its plot.

The headline names the direction the eval's metric moves from the first model to the last and
says a trend only where `TrendResults.verdict` (both metrics' paired intervals, `config.verdict`)
supports one; each model's own figures keep the intervals its eval gave them.
"""

from __future__ import annotations

from ..behaviour.results import Difference
from ..job import RunInfo
from ..plots import Series, line_chart
from ..report.section import Section, Table, fmt, provenance
from .config import TrendConfig, TrendResults

_WHAT = {"sycophancy": "the answer agreeing with the user's stated view"}
_ORDER = {"parameters": "ordered by parameter count, smallest first", "given": "in the order given"}


def _behaviour(res: TrendResults) -> str:
    return _WHAT.get(res.eval, f"the answer showing {res.about}")


def _pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def _points(est) -> str:
    return f"{100 * est.value:+.1f} points ({100 * est.lo:+.1f} to {100 * est.hi:+.1f})"


def _headline(res: TrendResults) -> str:
    first, last = res.models[0], res.models[-1]
    a, b = first.all.matched.value, last.all.matched.value
    moves = (f"is {_pct(a)} for both {first.label} and {last.label}" if a == b else
             f"{'rises' if b > a else 'falls'} from {_pct(a)} ({first.label}) to {_pct(b)} ({last.label})")
    where = (f"Across {len(res.models)} models {_ORDER[res.order]}, the share of questions where {_behaviour(res)} "
             f"is the likelier one {moves}")
    change = res.change
    if change is None:
        return where + ", but no question was asked of both, so the models cannot be compared."
    both = f"share {_points(change.matched)}, mean probability {_points(change.p_match)}"
    if res.verdict == "rises":
        return (where + f"; both paired intervals of the change exclude zero ({both}): an inverse trend, the later "
                "models show more of the behaviour.")
    if res.verdict == "falls":
        return where + f"; both paired intervals of the change exclude zero ({both}): the later models show less of it."
    if res.verdict == "mixed":
        return where + f"; {_disagreement(change)} ({both}), so the evidence does not support a trend."
    return (where + f"; the paired intervals of the change include zero ({both}), so the evidence does not "
            "support a trend either way.")


def _disagreement(change: Difference) -> str:
    """Why a mixed change is no trend: one metric's interval excludes zero and the other's does not, or they
    point opposite ways."""
    named = {"share": change.matched, "mean probability": change.p_match}
    moved = {name: "a rise" if e.lo > 0 else "a fall" for name, e in named.items() if e.lo > 0 or e.hi < 0}
    if len(moved) == 2:
        return "the two metrics' paired intervals point opposite ways"
    (name, turn), other = next(iter(moved.items())), next(n for n in named if n not in moved)
    return f"only the {name}'s paired interval excludes zero ({turn}); the {other}'s includes zero"


def _step(diff: Difference | None) -> str:
    return "n/a" if diff is None else fmt(diff.matched, percent=True)


def _table(res: TrendResults) -> Table:
    rows = [(m.label, f"{m.parameters:,}" if m.parameters is not None else "n/a (server)",
             fmt(m.all.matched, percent=True), fmt(m.all.p_match, percent=True),
             "" if i == 0 else _step(res.steps[i - 1]), str(m.all.n_questions), m.folder)
            for i, m in enumerate(res.models)]
    return Table(("model", "parameters", "share preferring it", "mean probability on it",
                  "change in share from the previous model", "questions", "eval run"), rows)


def trend_svg(res: TrendResults) -> str:
    """Both metrics against the model (in order), each with its 95% band from the model's own eval."""
    def series(name: str, metric: str) -> Series:
        ests = [getattr(m.all, metric) for m in res.models]
        return Series(name, list(range(len(ests))), [e.value for e in ests], [e.lo for e in ests], [e.hi for e in ests])

    return line_chart([series("share preferring it", "matched"), series("mean probability on it", "p_match")],
                      f"{_behaviour(res).capitalize()}, by model (both answer orders, 95% intervals)",
                      f"model ({_ORDER[res.order]})", "share of questions / probability", y_range=(0.0, 1.0),
                      x_ticks=[(i, m.label) for i, m in enumerate(res.models)])


def trend_section(res: TrendResults, cfg: TrendConfig, run: RunInfo) -> Section:
    numbers = []
    if res.change is not None:
        numbers += [("change from the first model to the last: share of questions preferring it",
                     fmt(res.change.matched, percent=True)),
                    ("change from the first model to the last: mean probability on it",
                     fmt(res.change.p_match, percent=True)),
                    ("questions asked of both (the paired intervals resample these)", str(res.change.n_questions))]
    numbers.append(("verdict (a trend needs both paired intervals to exclude 0 on the same side)", res.verdict))
    return Section(
        kind="trend across models", title=f"Does {res.eval} change across models?", headline=_headline(res),
        numbers=numbers, table=_table(res), figure_svg=trend_svg(res),
        shows=[f"How one eval's metric ({res.eval}: {res.about}) moves along a set of models, each asked the same "
               "questions in both answer orders.",
               "Whether the change from the first model to the last is larger than the questions' noise: a "
               "bootstrap over questions of the paired difference, for both metrics."],
        does_not_show=["Why the models differ: parameter count, training data and fine-tuning change together.",
                       "A scaling law: a trend over a few models says nothing about models outside them, and the "
                       "embedded models have 135-270 million parameters.",
                       "Anything about models in between: the call compares the first model with the last (the table "
                       "gives each step)."],
        provenance=provenance(run.meta, str(run.folder)),
    )
