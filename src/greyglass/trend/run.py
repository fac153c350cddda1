"""Running a trend: each model's run of the job in a sub-run folder of its own, then the comparison.

`out/models/<model>/` is an ordinary run folder of the job (`eval`, `eval-cot`, `eval-pressure` or
`redteam`), written by that job itself (so the report and the browser show each model's run too),
beside `trend_model.json` (the model as given, its dtype and its parameter count, written before
the run starts). With `resume`, a finished sub-run whose settings and model match is read back
instead of asked again, an interrupted one continues where it stopped (the job's own resume), and
a model added to the command is simply one more sub-run. The folder of a model is named after it,
not its position, so adding or reordering models reuses the others.

The comparison reads each sub-run's items (`measures.py`): paired by id where every model is asked
the same items (the sample depends on the settings only), unpaired for a red team; see
`config.verdict` for the rule.
"""

from __future__ import annotations

import re
import sys
import urllib.parse
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from ..atomic import write_json
from ..behaviour.config import EvalConfig, HttpConfig
from ..behaviour.jobs import EVAL, EVAL_COT, EVAL_PRESSURE
from ..behaviour.run import with_answer_prefix
from ..errors import GreyglassError
from ..fingerprint import json_sha256
from ..job import Job, RunOptions, read_job_run, run_and_read
from ..json_files import read_json_object
from ..organism.config import MODEL_FOLDER
from ..plots import save_svg
from ..redteam.config import RedteamConfig
from ..redteam.jobs import REDTEAM
from ..runs import CONFIG, RESULTS, write_config, write_results
from .config import MODELS_FOLDER, PLOT, JobSettings, ModelRow, TrendConfig, TrendResults, is_url, verdict
from .measures import Measure, Records, change, measure_of, model_row
from .report import trend_svg

MODEL_FILE = "trend_model.json"
"""In each sub-run: the model as given, its dtype and its parameter count."""
JOBS: dict[str, Job] = {"eval": EVAL, "eval-cot": EVAL_COT, "eval-pressure": EVAL_PRESSURE, "redteam": REDTEAM}
"""The job each `--job` name runs in every sub-run."""


class Subject(NamedTuple):
    """One model of the trend: as given, how it is named, and its sub-run folder."""

    spec: str
    label: str
    folder: Path


def run_trend(cfg: TrendConfig, out: str | Path, resume: bool = False, progress: bool = True) -> TrendResults:
    """Run the job on every model of `cfg` (reusing finished sub-runs with `resume`), compare, write `out`."""
    out = Path(out)
    if (out / CONFIG).exists() and not resume:
        raise GreyglassError(f"{out} already holds a run; choose another --out, or --resume to continue it")
    subjects = [Subject(spec, label, out / MODELS_FOLDER / folder_name(spec))
                for spec, label in zip(cfg.models, cfg.labels or map(default_label, cfg.models))]
    write_config(out, "trend", config=cfg, model={"name": ", ".join(s.label for s in subjects)})
    measure, seed = measure_of(cfg.job.asked), cfg.job.asked.seed
    parameters = []
    for i, subject in enumerate(subjects):
        if progress:
            print(f"trend: {subject.label} ({i + 1} of {len(subjects)})", file=sys.stderr, flush=True)
        parameters.append(run_subject(subject, cfg, resume, progress))
    records = [measure.records(s.folder) for s in subjects]
    rows = [model_row(s.spec, s.label, counted, str(s.folder.relative_to(out)), r, measure, seed)
            for s, counted, r in zip(subjects, parameters, records)]
    ranked = sorted(zip(rows, records), key=lambda pair: (pair[0].parameters or 0) if cfg.order == "parameters" else 0)
    results = compare(cfg, measure, [row for row, _ in ranked], [r for _, r in ranked])  # sorted is stable
    save_svg(out / PLOT, trend_svg(results))
    write_results(out, results)
    return results


def compare(cfg: TrendConfig, measure: Measure, rows: list[ModelRow], records: list[Records]) -> TrendResults:
    """The models in order, with the change from the first to the last and between neighbours."""
    seed = cfg.job.asked.seed
    first_to_last = change(records[0], records[-1], measure, seed)
    steps = tuple(change(a, b, measure, seed) for a, b in zip(records, records[1:]))
    return TrendResults(cfg.job.name, measure.task, measure.about, tuple(m.name for m in measure.metrics), cfg.order,
                        tuple(rows), first_to_last, steps, verdict(first_to_last))


def run_subject(subject: Subject, cfg: TrendConfig, resume: bool, progress: bool) -> int | None:
    """Run the job on the model (a finished sub-run is read back with `resume`); its parameter count."""
    job, asked = JOBS[cfg.job.name], settings_for(subject.spec, cfg.job.asked)
    model = {"spec": subject.spec, "dtype": cfg.dtype}
    if resume and (subject.folder / RESULTS).exists():
        run, record = read_job_run(job, subject.folder), read_json_object(subject.folder / MODEL_FILE)
        if run.config != as_recorded(asked, run.config) or {k: record.get(k) for k in model} != model:
            raise GreyglassError(f"{subject.folder} holds a {cfg.job.name} run with other settings or another model; "
                                 "resume with the same flags and --dtype, or choose another --out")
        return record.get("parameters")
    lm = None if is_url(subject.spec) else load(subject.spec, cfg)
    parameters = None if lm is None else sum(p.numel() for p in lm.model.parameters())  # a tied tensor once
    write_json(subject.folder / MODEL_FILE, {**model, "parameters": parameters})
    run_and_read(job, lm, asked, subject.folder, RunOptions(progress=progress, resume=resume))
    return parameters


def as_recorded(asked: JobSettings, recorded: JobSettings) -> JobSettings:
    """`asked` as its config.json would record it: an eval's answer prefix and, where none was asked, the
    batch size the backend chose; other jobs record their settings as asked."""
    if not isinstance(asked, EvalConfig):
        return asked
    asked = with_answer_prefix(asked)
    assert isinstance(recorded, EvalConfig)  # read back by the same job
    return asked if asked.batch_size is not None else replace(asked, batch_size=recorded.batch_size)


def settings_for(spec: str, asked: JobSettings) -> JobSettings:
    """The job's settings for one model: a URL (`http://host/v1#name`) becomes the server an eval asks, or the
    target a red team attacks."""
    if not is_url(spec):
        return asked
    url, _, name = spec.partition("#")
    if isinstance(asked, RedteamConfig):
        return replace(asked, target_url=spec)
    return replace(asked, server=HttpConfig(url=url, server_model=name or "default"))


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
