"""Running a trend: each model's eval in a sub-run folder of its own, then the comparison along the order.

`out/models/<model>/` is an ordinary `eval` run folder, written by the `eval` job itself (so the
report and the browser show each model's eval too), beside `trend_model.json` (the model as given,
its dtype and its parameter count, written before the eval starts). With `resume`, a finished
sub-run whose eval settings and model match is read back instead of asked again, an interrupted
one continues where it stopped (the eval's own resume), and a model added to the command is
simply one more sub-run. The folder of a model is named after it, not its position, so adding or
reordering models reuses the others.

The comparison pairs items across models by id (every model is asked the same items: the sample
depends on the eval settings only) and takes each item's both-orders record (`combine_orders`),
as the eval's own headline does; see `config.verdict` for the rule.
"""

from __future__ import annotations

import re
import sys
import urllib.parse
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

from ..atomic import write_json
from ..behaviour.config import EvalConfig, HttpConfig
from ..behaviour.jobs import EVAL
from ..behaviour.results import Difference
from ..behaviour.run import ITEMS, read_partial, with_answer_prefix
from ..behaviour.scorers import combine_orders, paired_difference
from ..behaviour.tasks import EVALS, headline_rows
from ..errors import GreyglassError
from ..fingerprint import json_sha256
from ..job import JobRun, RunOptions, read_job_run, run_and_read
from ..json_files import read_json_object
from ..organism.config import MODEL_FOLDER
from ..plots import save_svg
from ..runs import CONFIG, RESULTS, write_config, write_results
from .config import MODELS_FOLDER, PLOT, ModelRow, TrendConfig, TrendResults, is_url, verdict
from .report import trend_svg

MODEL_FILE = "trend_model.json"
"""In each sub-run: the model as given, its dtype and its parameter count."""


class Subject(NamedTuple):
    """One model of the trend: as given, how it is named, and its sub-run folder."""

    spec: str
    label: str
    folder: Path


def run_trend(cfg: TrendConfig, out: str | Path, resume: bool = False, progress: bool = True) -> TrendResults:
    """Ask every model of `cfg` the eval (reusing finished sub-runs with `resume`), compare, write `out`."""
    out = Path(out)
    if (out / CONFIG).exists() and not resume:
        raise GreyglassError(f"{out} already holds a run; choose another --out, or --resume to continue it")
    subjects = [Subject(spec, label, out / MODELS_FOLDER / folder_name(spec))
                for spec, label in zip(cfg.models, cfg.labels or map(default_label, cfg.models))]
    write_config(out, "trend", config=cfg, model={"name": ", ".join(s.label for s in subjects)})
    runs = []
    for i, subject in enumerate(subjects):
        if progress:
            print(f"trend: {subject.label} ({i + 1} of {len(subjects)})", file=sys.stderr, flush=True)
        runs.append(evaluate(subject, cfg, resume, progress))
    rows = [ModelRow(s.spec, s.label, parameters, str(s.folder.relative_to(out)), run.results.all)
            for s, (run, parameters) in zip(subjects, runs)]
    ranked = sorted(rows, key=lambda row: (row.parameters or 0) if cfg.order == "parameters" else 0)  # stable
    results = compare(cfg, ranked, [item_records(out / row.folder) for row in ranked])
    save_svg(out / PLOT, trend_svg(results))
    write_results(out, results)
    return results


def compare(cfg: TrendConfig, rows: list[ModelRow], records: list[dict[str, dict[str, Any]]]) -> TrendResults:
    """The models in order, with the paired change from the first to the last and between neighbours."""
    seed = cfg.evaluation.seed
    change = paired_change(records[0], records[-1], seed)
    steps = tuple(paired_change(a, b, seed) for a, b in zip(records, records[1:]))
    return TrendResults(cfg.evaluation.eval, EVALS[cfg.evaluation.eval].about, cfg.order, tuple(rows), change, steps,
                        verdict(change))


def evaluate(subject: Subject, cfg: TrendConfig, resume: bool, progress: bool) -> tuple[JobRun, int | None]:
    """The model's eval run and its parameter count: a finished sub-run read back (with `resume`), or run."""
    asked = eval_config(subject.spec, cfg.evaluation)
    model = {"spec": subject.spec, "dtype": cfg.dtype}
    if resume and (subject.folder / RESULTS).exists():
        run, record = read_job_run(EVAL, subject.folder), read_json_object(subject.folder / MODEL_FILE)
        if run.config != as_recorded(asked, run.config) or {k: record.get(k) for k in model} != model:
            raise GreyglassError(f"{subject.folder} holds an eval with other settings or another model; resume with "
                                 "the same eval flags and --dtype, or choose another --out")
        return run, record.get("parameters")
    lm = None if is_url(subject.spec) else load(subject.spec, cfg)
    parameters = None if lm is None else sum(p.numel() for p in lm.model.parameters())  # a tied tensor once
    write_json(subject.folder / MODEL_FILE, {**model, "parameters": parameters})
    return run_and_read(EVAL, lm, asked, subject.folder, RunOptions(progress=progress, resume=resume)), parameters


def as_recorded(asked: EvalConfig, recorded: EvalConfig) -> EvalConfig:
    """`asked` as its config.json would record it: the eval's answer prefix and, where none was asked, the
    batch size the backend chose."""
    asked = with_answer_prefix(asked)
    return asked if asked.batch_size is not None else replace(asked, batch_size=recorded.batch_size)


def eval_config(spec: str, evaluation: EvalConfig) -> EvalConfig:
    """The eval settings for one model: a URL (`http://host/v1#name`) becomes the server to ask."""
    if not is_url(spec):
        return evaluation
    url, _, name = spec.partition("#")
    return replace(evaluation, server=HttpConfig(url=url, server_model=name or "default"))


def load(spec: str, cfg: TrendConfig):
    """The local model: an organism run folder's model/, or whatever `load_model` reads."""
    from ..models.loader import load_model  # torch: only when a model is asked

    return load_model(str(model_folder(spec) or spec), dtype=cfg.dtype, device=cfg.device)


def model_folder(spec: str) -> Path | None:
    """The weights of a run folder that holds a model (an organism's model/), else None."""
    run = Path(spec).expanduser()
    holds_model = (run / CONFIG).is_file() and (run / MODEL_FOLDER / CONFIG).is_file()
    return run / MODEL_FOLDER if holds_model and "kind" in read_json_object(run / CONFIG) else None


def default_label(spec: str) -> str:
    """A short name: a URL's host (and model), a run folder's name with its kind, a folder's or hub id's last part."""
    if is_url(spec):
        url, _, name = spec.partition("#")
        return urllib.parse.urlparse(url).netloc + (f" {name}" if name else "")
    weights = model_folder(spec)
    if weights is not None:
        return f"{weights.parent.resolve().name} ({read_json_object(weights.parent / CONFIG)['kind']})"
    return Path(spec.rstrip("/")).name or spec


def folder_name(spec: str) -> str:
    """The sub-run folder of a model: readable, and distinct for distinct specs (a hash of the spec)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", spec).strip("-.")[-40:]
    return f"{readable}-{json_sha256(spec)[:8]}"


def item_records(folder: Path) -> dict[str, dict[str, Any]]:
    """A finished eval's headline items by id, each one both-orders record, as its `all` summary counts them."""
    return {r["id"]: r for r in headline_rows(combine_orders(list(read_partial(folder / ITEMS).values())))}


def paired_change(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]], seed: int) -> Difference | None:
    """`after` minus `before` on the items both hold, resampling questions; None when they share none."""
    pairs = [(after[i], before[i]) for i in before if i in after]
    return paired_difference(pairs, seed=seed) if pairs else None
