"""What a trend measures in each kind of run: the metrics, read item by item from a finished sub-run.

A `Measure` turns one finished run folder of its job into `Records`: one record per item (a
question in both answer orders, a problem, a sampled episode, a target answer), each with the
cluster its interval resamples and a value per metric (None where the metric does not apply: a
chain with no number stated, an episode of the other ethics condition). Every metric is oriented
the same way: higher is more of what the job tests.

- `eval`: the share of questions whose behaviour-matching answer is the likelier one, and the
  mean probability on it (both answer orders averaged), clustered by question, as the eval's own
  headline counts them.
- `eval-cot` (Lanham et al. 2023): how often the answer stays the same with the chain of thought
  cut to nothing (early answering at 0) and with a mistake added to it, per problem. Higher:
  the stated reasoning matters less to the answer (less faithful); Lanham et al. report this
  rising with model size.
- `eval-pressure`: the scenario's misconduct (insider-trading: traded on the tip and hid it from
  the manager; customer-funds: moved customer funds) without and with the ethics instruction;
  customer-funds episodes are clustered by the grid cell (one prompt), insider-trading ones are
  independent draws.
- `redteam`: the share of answers that fail (the deciding classifier) and the mean failure score,
  clustered by test case. Each target gets its own cases, so the change is unpaired.

`change` compares two models' records: paired over the ids both hold (the mean difference,
resampling the pairs' clusters), or two independent samples each resampled by its own clusters.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NamedTuple

from ..behaviour.config import CotConfig, EvalConfig, PressureConfig
from ..behaviour.run import ITEMS, read_partial
from ..behaviour.scorers import combine_orders, difference_ci
from ..behaviour.tasks import EVALS, headline_rows
from ..redteam.config import RedteamConfig
from ..redteam.failures import FAILURES
from ..stats import Estimate, mean_probability_ci, n_groups, proportion_ci, unpaired_difference_ci
from .config import Change, JobSettings, ModelRow

Record = dict[str, Any]
Records = dict[str, Record]
"""By item id: {"id", "cluster", and one value (or None) per metric key}."""


class Metric(NamedTuple):
    key: str
    name: str
    """In plain words, for the table and plot."""
    kind: Literal["share", "mean"]
    """share: 0/1 outcomes; mean: probabilities or scores (a bootstrap interval); both never zero-width."""


class Measure(NamedTuple):
    """One job's metrics and how to read its items; `paired`: every model is asked the same items."""

    metrics: tuple[Metric, ...]
    paired: bool
    task: str
    about: str
    records: Callable[[Path], Records]


def measure_of(asked: JobSettings) -> Measure:
    """The measure of a trend's job, from the settings every model is asked with."""
    if isinstance(asked, EvalConfig):
        return Measure((Metric("matched", "share of questions where the behaviour's answer is the likelier", "share"),
                        Metric("p_match", "mean probability on the behaviour's answer", "mean")),
                       True, asked.eval, EVALS[asked.eval].about, eval_records)
    if isinstance(asked, CotConfig):
        return Measure((Metric("unchanged_without_chain", "share of answers unchanged with no chain of thought", "share"),
                        Metric("unchanged_with_mistake", "share of answers unchanged with a mistake added", "share")),
                       True, asked.task, "answers that do not depend on the stated reasoning (unfaithful chains of "
                       "thought)", cot_records)
    if isinstance(asked, PressureConfig):
        act = PRESSURE_ACTS[asked.scenario]
        return Measure((Metric("act_without_ethics", f"share of episodes that {act}, no ethics instruction", "share"),
                        Metric("act_with_ethics", f"share of episodes that {act}, with the ethics instruction", "share")),
                       True, asked.scenario, f"misconduct under pressure ({act})",
                       lambda folder: pressure_records(folder, asked))
    assert isinstance(asked, RedteamConfig)
    return Measure((Metric("fail", "share of answers that fail", "share"),
                    Metric("score", "mean failure score", "mean")),
                   False, asked.failure, FAILURES[asked.failure].about, redteam_records)


PRESSURE_ACTS = {"insider-trading": "traded on the tip and hid it", "customer-funds": "moved customer funds"}
"""Each scenario's misconduct, as its rows record it (`traded_and_hid`, `misused`)."""
_PRESSURE_KEYS = {"insider-trading": "traded_and_hid", "customer-funds": "misused"}


def _rows(folder: Path, name: str = ITEMS) -> list[Record]:
    return list(read_partial(folder / name).values())


def eval_records(folder: Path) -> Records:
    """A finished eval's headline items (both orders combined), as its `all` summary counts them."""
    return {r["id"]: r for r in headline_rows(combine_orders(_rows(folder)))}


def cot_records(folder: Path) -> Records:
    return {r["id"]: {"id": r["id"], "cluster": r["id"], "unchanged_without_chain": r["early_same"].get("0.0"),
                      "unchanged_with_mistake": r.get("mistake_same")} for r in _rows(folder)}


def pressure_records(folder: Path, asked: PressureConfig) -> Records:
    from ..behaviour.pressure import FUNDS_FACTORS

    key = _PRESSURE_KEYS[asked.scenario]

    def cluster(r: Record) -> str:
        cell = ",".join(str(r.get(k)) for k in FUNDS_FACTORS) if asked.scenario == "customer-funds" else r["id"]
        return f"ethics={r['ethics']}/{cell}"

    return {r["id"]: {"id": r["id"], "cluster": cluster(r),
                      "act_without_ethics": None if r["ethics"] else r[key],
                      "act_with_ethics": r[key] if r["ethics"] else None} for r in _rows(folder)}


def redteam_records(folder: Path) -> Records:
    from ..redteam.run import CASES

    return {r["id"]: {"id": r["id"], "cluster": r["case_id"], "fail": float(r["verdict"] == "fail"),
                      "score": float(r["score"])} for r in _rows(folder, CASES)}


def estimate(records: Records, metric: Metric, seed: int) -> Estimate:
    """The metric over the items it applies to, with a 95% interval resampling their clusters (the job's own
    interval: a share's is never zero-width)."""
    values, groups = _sample(records, metric)
    if not values:
        return Estimate(float("nan"), float("nan"), float("nan"))
    if len(set(groups)) == len(groups):  # one item per cluster: independent rows, as the jobs' own figures count them
        groups = None
    return (proportion_ci if metric.kind == "share" else mean_probability_ci)(values, groups, seed=seed)


def model_row(spec: str, label: str, parameters: int | None, folder: str, records: Records,
              measure: Measure, seed: int) -> ModelRow:
    clusters = [r["cluster"] for r in records.values()]
    return ModelRow(spec, label, parameters, folder, tuple(estimate(records, m, seed) for m in measure.metrics),
                    len(records), n_groups(clusters, len(clusters)))


def change(before: Records, after: Records, measure: Measure, seed: int) -> Change | None:
    """`after` minus `before` for each metric: paired over the ids both hold (None when they share none), or,
    for a measure whose items differ by model, as two independent samples."""
    if not measure.paired:
        values = tuple(unpaired_difference_ci(*_sample(after, m), *_sample(before, m), seed=seed)
                       for m in measure.metrics)
        sizes = [(len(r), n_groups([x["cluster"] for x in r.values()], len(r))) for r in (before, after)]
        return Change(False, min(n for n, _ in sizes), min(k for _, k in sizes), values)
    shared = [i for i in before if i in after]
    if not shared:
        return None
    values = tuple(paired_difference_ci([(after[i], before[i]) for i in shared
                                         if after[i].get(m.key) is not None and before[i].get(m.key) is not None],
                                        m.key, seed) for m in measure.metrics)
    clusters = [before[i]["cluster"] for i in shared]
    return Change(True, len(shared), n_groups(clusters, len(clusters)), values)


def _sample(records: Records, metric: Metric) -> tuple[list[float], list[Any]]:
    """The metric's values over the items it applies to, and their clusters."""
    known = [r for r in records.values() if r.get(metric.key) is not None]
    return [float(r[metric.key]) for r in known], [r["cluster"] for r in known]


def paired_difference_ci(pairs: list[tuple[Record, Record]], key: str, seed: int) -> Estimate:
    """The mean of (first - second) over the pairs, resampling the first's clusters; NaN without pairs."""
    if not pairs:
        return Estimate(float("nan"), float("nan"), float("nan"))
    return difference_ci(pairs, key, [a["cluster"] for a, _ in pairs], seed)
