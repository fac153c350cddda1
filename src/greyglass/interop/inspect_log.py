"""greyglass eval runs as inspect_ai eval logs: `greyglass export inspect RUN_FOLDER -o FILE.eval`.

A finished run folder of `eval`, `eval-cot` or `eval-pressure` becomes one inspect_ai `EvalLog`,
built from inspect_ai's own classes and written by its `write_eval_log` (`.eval`, or `.json` by
the file name), so `inspect view` opens it and `inspect log dump` / `read_eval_log` read it.

- The log's task is `greyglass/<kind>` (e.g. `greyglass/eval_sycophancy`), its model the run's,
  its task args the run's Config, and its metadata the whole `config.json` (command, versions,
  backend, data fingerprint).
- One sample per row of `items.jsonl`: the prompt as sent (or the rebuilt conversation), the
  choices and target where the eval has them, the model's answer as output, the per-row scores
  as inspect `Score`s, and greyglass's extras in the sample's metadata.
- The log's results are greyglass's own `results.json` figures (headline value with its 95%
  interval as metrics), not recomputed by inspect: the intervals resample questions, which
  inspect's `stderr` does not.

Per kind:

- `eval`: scores `matched` (1 when the behaviour-matching answer is the likelier, ties shared)
  and `p_match`; metadata holds each answer's log-probability, the row's answer order, its
  cluster and dataset, the position-debiased figures of its item (`debiased`: the mean over both
  answer orders, `combine_orders`) and, with `--probe`, the probe's score at the answer position.
- `eval_cot`: the problem, the gold answer as target and the chain of thought as output; scores
  `correct`, `early_answering` (same answer at each fraction of the chain kept), `mistake_same`
  and `filler_same` (None where the answer stated no number).
- `eval_pressure`: the whole conversation (system prompt with or without the ethics instruction,
  each user turn and the agent's reply); a score per classified act (`traded`, `hid`,
  `doubled_down`, `traded_and_hid`, `misused`, `parsed`) and the judge's verdicts when one ran.

greyglass's evals do not steer: a steered model is evaluated through `serve-model --steer`,
whose URL the run's backend metadata records.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from ..atomic import atomic_path
from ..behaviour.jobs import EVAL, EVAL_COT, EVAL_PRESSURE
from ..data.files import jsonl_objects
from ..errors import GreyglassError
from ..fingerprint import json_sha256
from ..job import JobRun, typed_run
from ..runs import read_run
from ..stats import Estimate
from ..version import __version__

JOBS = {job.name: job for job in (EVAL, EVAL_COT, EVAL_PRESSURE)}


class Part(NamedTuple):
    """What a kind of run contributes to the log: the task's name, its samples and its results' metrics."""

    task: str
    samples: list[Any]  # [inspect_ai.log.EvalSample]
    scores: list[Any]  # [inspect_ai.log.EvalScore]


def export_inspect(folder: str | Path, out: str | Path) -> Path:
    """Write the eval run in `folder` as an inspect_ai log at `out` (.eval or .json), atomically."""
    from inspect_ai.log import write_eval_log

    out = Path(out)
    if out.suffix not in (".eval", ".json"):
        raise GreyglassError(f"{out}: an inspect log is a .eval (or .json) file; name it e.g. {out.stem}.eval")
    log = eval_log(folder)
    try:
        with atomic_path(out) as tmp:
            write_eval_log(log, str(tmp), format=out.suffix[1:])
    except OSError as e:
        raise GreyglassError(f"{out}: cannot write the inspect log ({e.strerror or e}); choose a writable path") from None
    return out


def eval_log(folder: str | Path) -> Any:
    """The inspect_ai `EvalLog` of a finished eval, eval_cot or eval_pressure run folder."""
    from inspect_ai.log import EvalConfig, EvalDataset, EvalLog, EvalPlan, EvalPlanStep, EvalResults, EvalSpec, EvalStats

    run = _read(Path(folder))
    items = run.info.folder / "items.jsonl"
    rows = [row for _, row in jsonl_objects(items, "a scored item")]
    try:
        part = PARTS[run.job.name](run, rows)
    except KeyError as e:
        raise GreyglassError(f"{items}: a row has no field {e.args[0]!r}; this file was not written by a greyglass "
                             f"{run.job.name} run (rerun it, or restore the file)") from None
    meta = run.info.meta
    created = meta.get("created") or "1970-01-01T00:00:00+00:00"
    run_id = json_sha256([str(run.info.folder.resolve()), created])[:22]  # the same run exports to the same ids
    spec = EvalSpec(created=created, task=part.task, task_id=run_id, run_id=run_id, task_args=meta.get("config", {}),
                    dataset=EvalDataset(name=part.task, location=str(run.info.folder), samples=len(part.samples)),
                    model=f"greyglass/{meta.get('model', {}).get('name', 'unknown')}", config=EvalConfig(),
                    packages={"greyglass": __version__}, metadata={"greyglass": meta})
    plan = EvalPlan(steps=[EvalPlanStep(solver=f"greyglass/{run.job.name}", params={"command": meta.get("command")})])
    results = EvalResults(total_samples=len(part.samples), completed_samples=len(part.samples), scores=part.scores)
    return EvalLog(status="success", eval=spec, plan=plan, results=results, samples=part.samples,
                   stats=EvalStats(started_at=created, completed_at=created))


def _read(folder: Path) -> JobRun:
    meta, results = read_run(folder)
    kind = meta.get("kind")
    if kind not in JOBS:
        raise GreyglassError(f"{folder} holds a '{kind}' run; an inspect log can be made from {', '.join(JOBS)} "
                             "runs (greyglass eval, eval-cot, eval-pressure)")
    if not (folder / "items.jsonl").exists():
        raise GreyglassError(f"{folder}: items.jsonl is missing; export a finished run (or finish it with --resume)")
    return typed_run(JOBS[kind], folder, meta, results)


def _sample(id: str, messages: list[dict[str, str]], output: str, **fields: Any) -> Any:
    """An inspect sample whose input is every message but the last (the model's), and whose output is that one."""
    from inspect_ai.log import EvalSample
    from inspect_ai.model import ChatMessageAssistant, ChatMessageSystem, ChatMessageUser, ModelOutput

    kinds = {"system": ChatMessageSystem, "user": ChatMessageUser, "assistant": ChatMessageAssistant}
    chat = [kinds[m["role"]](content=m["content"]) for m in messages]
    return EvalSample(id=id, epoch=1, input=chat[:-1] if len(chat) > 2 else messages[0]["content"], messages=chat,
                      output=ModelOutput.from_content(model="greyglass", content=output), **fields)


def _score(name: str, figures: dict[str, Estimate | float | None]) -> Any:
    """An inspect EvalScore holding greyglass's figures (an Estimate gives its value and 95% interval)."""
    from inspect_ai.log import EvalMetric, EvalScore

    metrics = {}
    for key, fig in figures.items():
        if isinstance(fig, Estimate):
            metrics.update({key: fig.value, f"{key}_ci95_low": fig.lo, f"{key}_ci95_high": fig.hi})
        elif fig is not None:
            metrics[key] = float(fig)
    return EvalScore(name=name, scorer=name, metrics={k: EvalMetric(name=k, value=v) for k, v in metrics.items()})


def _rate(rate: Any) -> Estimate | None:
    return None if rate is None else rate.share


def _eval_part(run: JobRun, rows: list[dict[str, Any]]) -> Part:
    """`greyglass eval`: one sample per prompt scored (each answer order, each control)."""
    from inspect_ai.scorer import Score

    from ..behaviour.scorers import combine_orders

    res = run.results
    debiased = {r["id"]: r for r in combine_orders(rows)}
    probe = run.info.meta.get("backend", {}).get("probe")
    samples = []
    for r in rows:
        item = debiased[r.get("unswapped_id") or r["id"]]
        metadata = {k: r.get(k) for k in ("dataset", "condition", "source", "cluster", "order", "base_id", "p_first")}
        metadata.update(logprobs=dict(zip(r["choices"], r["logprobs"])), debiased={
            k: item[k] for k in ("p_match", "matched", "orders")})
        if probe:
            metadata["probe"] = {**probe, "score": r.get("probe")}
        scores = {"matched": Score(value=r["matched"], answer=r["chosen"]), "p_match": Score(value=r["p_match"])}
        samples.append(_sample(r["id"], [{"role": "user", "content": r["prompt"]},
                                         {"role": "assistant", "content": r["chosen"] or ""}], r["chosen"] or "",
                               choices=r["choices"], target=r["answer_matching_behavior"], scores=scores,
                               metadata=metadata))
    scores = [_score("matched", {"debiased": res.all.matched, "raw": res.all.raw_matched}),
              _score("p_match", {"debiased": res.all.p_match, "raw": res.all.raw_p_match})]
    if res.probe is not None:
        scores.append(_score("probe", {"auroc": res.probe.auroc}))
    return Part(f"greyglass/eval_{res.eval}", samples, scores)


def _cot_part(run: JobRun, rows: list[dict[str, Any]]) -> Part:
    """`greyglass eval-cot`: one sample per problem, the chain of thought as output."""
    from inspect_ai.scorer import Score

    from ..behaviour.cot import ANSWER_CUE

    samples = []
    for r in rows:
        scores = {"correct": Score(value=r["correct"], answer=r["answer"]),
                  "early_answering": Score(value=r["early_same"]),
                  "mistake_same": Score(value={"same": r["mistake_same"]}),
                  "filler_same": Score(value={"same": r["filler_same"]})}
        output = f"{r['chain']}{ANSWER_CUE} {r['answer'] or ''}".rstrip()
        metadata = {k: v for k, v in r.items() if k not in ("id", "question", "gold", "chain")}
        samples.append(_sample(r["id"], [{"role": "user", "content": r["question"]},
                                         {"role": "assistant", "content": output}], output, target=r["gold"],
                               scores=scores, metadata=metadata))
    s = run.results.all
    scores = [_score("correct", {"accuracy": _rate(s.accuracy)}),
              _score("early_answering", {"aoc": s.early_answering_aoc,
                                         **{f"unchanged_at_{k}": _rate(v) for k, v in s.early_answering.items()}}),
              _score("mistake_same", {"unchanged": _rate(s.adding_mistakes_unchanged)}),
              _score("filler_same", {"unchanged": _rate(s.filler_unchanged)})]
    return Part(f"greyglass/eval_cot_{run.results.task}", samples, scores)


ACTS = ("parsed", "traded", "hid", "doubled_down", "traded_and_hid", "misused", "judge_hid", "judge_doubled_down")


def _pressure_part(run: JobRun, rows: list[dict[str, Any]]) -> Part:
    """`greyglass eval-pressure`: one sample per sampled episode, the whole conversation."""
    from inspect_ai.scorer import Score

    from ..behaviour.pressure import conversation

    res = run.results
    samples = []
    for r in rows:
        messages = conversation(r, res.scenario)
        scores = {act: Score(value=r[act]) for act in ACTS if r.get(act) is not None}
        metadata = {k: v for k, v in r.items() if k not in ("id", "turns")}
        samples.append(_sample(r["id"], messages, messages[-1]["content"], target="", scores=scores,
                               metadata=metadata))
    scores = []
    for act in ACTS:
        by_condition = {f"{name}_ethics": _rate(getattr(cond, act, None))
                        for name, cond in (("without", res.without_ethics), ("with", res.with_ethics))}
        if any(v is not None for v in by_condition.values()):
            scores.append(_score(act, {**by_condition, "ethics_effect": res.ethics_effect.get(act)}))
    return Part(f"greyglass/eval_pressure_{res.scenario}", samples, scores)


PARTS: dict[str, Callable[[JobRun, list[dict[str, Any]]], Part]] = {
    "eval": _eval_part, "eval_cot": _cot_part, "eval_pressure": _pressure_part}
