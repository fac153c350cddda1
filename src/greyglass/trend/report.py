"""The report section (and terminal summary) of a trend run, and its plot.

The headline names the direction the job's first metric moves from the first model to the last
and says a trend only where `TrendResults.verdict` (every metric's interval, `config.verdict`)
supports one; each model's figures keep the intervals of its own items.
"""

from __future__ import annotations

import math

from ..job import RunInfo
from ..plots import Series, line_chart
from ..report.section import Section, Table, fmt, provenance
from ..stats import Estimate
from .config import Change, TrendConfig, TrendResults

_ORDER = {"parameters": "ordered by parameter count, smallest first", "given": "in the order given"}
_JOB = {"eval": "eval", "eval-cot": "chain-of-thought faithfulness", "eval-pressure": "pressure scenario",
        "redteam": "red-teaming run"}


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.0f}%"


def _points(est: Estimate) -> str:
    return f"{100 * est.value:+.1f} points ({100 * est.lo:+.1f} to {100 * est.hi:+.1f})"


def _named(res: TrendResults, change: Change) -> str:
    return ", ".join(f"{name} {_points(e)}" for name, e in zip(res.metrics, change.values))


def _headline(res: TrendResults) -> str:
    first, last = res.models[0], res.models[-1]
    a, b = first.values[0].value, last.values[0].value
    moves = (f"is {_pct(a)} for both {first.label} and {last.label}" if a == b or math.isnan(a - b) else
             f"{'rises' if b > a else 'falls'} from {_pct(a)} ({first.label}) to {_pct(b)} ({last.label})")
    where = f"Across {len(res.models)} models {_ORDER[res.order]}, {_subject(res)}, the {res.metrics[0]} {moves}"
    change = res.change
    if change is None:
        return where + ", but no item was asked of both, so the models cannot be compared."
    every = "both intervals of the change exclude" if len(res.metrics) == 2 else "every interval of the change excludes"
    if res.verdict == "rises":
        return (where + f"; {every} zero ({_named(res, change)}): an inverse trend, the later models show more of "
                "the behaviour.")
    if res.verdict == "falls":
        return where + f"; {every} zero ({_named(res, change)}): the later models show less of it."
    if res.verdict == "mixed":
        return where + f"; {_disagreement(res, change)} ({_named(res, change)}), so the evidence does not support a trend."
    return (where + f"; the intervals of the change include zero ({_named(res, change)}), so the evidence does not "
            "support a trend either way.")


def _subject(res: TrendResults) -> str:
    return f"on the {res.task} eval" if res.job == "eval" else f"in the {_JOB[res.job]} {res.task}"


def _disagreement(res: TrendResults, change: Change) -> str:
    """Why a mixed change is no trend: some metrics' intervals exclude zero and others' do not, or they point
    opposite ways."""
    moved = {name: "a rise" if e.lo > 0 else "a fall" for name, e in zip(res.metrics, change.values)
             if e.lo > 0 or e.hi < 0}
    if len(set(moved.values())) == 2:
        return "the metrics' intervals point opposite ways"
    still = [name for name in res.metrics if name not in moved]
    return (f"only the interval of the {', '.join(moved)} excludes zero ({next(iter(moved.values()))}); "
            f"that of the {', '.join(still)} includes zero")


def _step(change: Change | None) -> str:
    return "n/a" if change is None else fmt(change.values[0], percent=True)


def _table(res: TrendResults) -> Table:
    rows = [(m.label, f"{m.parameters:,}" if m.parameters is not None else "n/a (server)",
             *(fmt(v, percent=True) for v in m.values), "" if i == 0 else _step(res.steps[i - 1]),
             f"{m.n} ({m.n_clusters} clusters)", m.folder)
            for i, m in enumerate(res.models)]
    return Table(("model", "parameters", *res.metrics, f"change in {res.metrics[0]} from the previous model",
                  "items", "run"), rows)


def trend_svg(res: TrendResults) -> str:
    """Every metric against the model (in order), each with its 95% band from the model's own items."""
    def series(j: int) -> Series:
        ests = [m.values[j] for m in res.models]
        return Series(res.metrics[j], list(range(len(ests))), [e.value for e in ests], [e.lo for e in ests],
                      [e.hi for e in ests])

    return line_chart([series(j) for j in range(len(res.metrics))],
                      f"{res.about.capitalize()}, by model (95% intervals)", f"model ({_ORDER[res.order]})",
                      "share / probability", y_range=(0.0, 1.0), x_ticks=[(i, m.label) for i, m in enumerate(res.models)])


def trend_section(res: TrendResults, cfg: TrendConfig, run: RunInfo) -> Section:
    numbers = []
    if res.change is not None:
        numbers += [(f"change from the first model to the last: {name}", fmt(e, percent=True))
                    for name, e in zip(res.metrics, res.change.values)]
        numbers.append(("items compared (the intervals resample their clusters)",
                        f"{res.change.n} ({res.change.n_clusters} clusters, "
                        f"{'paired: the same items for both' if res.change.paired else 'unpaired: each model its own items'})"))
    numbers.append(("verdict (a trend needs every interval of the change to exclude 0 on the same side)", res.verdict))
    return Section(
        kind="trend across models", title=f"Does {res.task} change across models?", headline=_headline(res),
        numbers=numbers, table=_table(res), figure_svg=trend_svg(res),
        shows=[f"How one {_JOB[res.job]}'s metrics ({res.task}: {res.about}) move along a set of models, each asked "
               + ("the same items." if res.change is None or res.change.paired else "by its own red team."),
               "Whether the change from the first model to the last is larger than the noise: a bootstrap over the "
               "clusters the items come in (questions, problems, prompts or test cases), for every metric."],
        does_not_show=["Why the models differ: parameter count, training data and fine-tuning change together.",
                       "A scaling law: a trend over a few models says nothing about models outside them, and the "
                       "embedded models have 135-270 million parameters.",
                       "Anything about models in between: the call compares the first model with the last (the table "
                       "gives each step)."],
        provenance=provenance(run.meta, str(run.folder)),
    )
