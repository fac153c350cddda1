"""A job is one kind of run: its command, typed Config and Results, how it runs, and its report section.

Everything that handles runs goes through `Job`: the CLI builds a sub-command from
`command` and the Config's fields and prints the section's summary; the report and the
browser read a run folder back as typed Config and Results and render the same section; the
demo is a list of jobs with their configs. So the terminal text and the report cannot
disagree, and adding a run kind is one module and one entry in its area's `JOBS`
(see docs/architecture.md).

A run folder holds `config.json` (`kind` = the job's name, the Config under `config`, the
model, the command line, versions) and `results.json` (the Results). Job modules must not
import torch at module level: `greyglass --help` imports every job.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from .errors import GreyglassError
from .records import RecordError, from_json
from .runs import check_layout, default_run_dir, read_run

if TYPE_CHECKING:
    from .models.lm import LoadedModel
    from .report.section import Section

C = TypeVar("C")
R = TypeVar("R")
T = TypeVar("T")


class RunOptions(NamedTuple):
    """How to run, as opposed to what to measure (so not part of the Config)."""

    progress: bool = True
    """Show progress bars."""
    resume: bool = False
    """Continue an interrupted run in the same folder (jobs with `resume` help only)."""


class DefaultOut(NamedTuple):
    """Where a job's run goes without --out, for a job whose runs belong beside their input, not in runs/."""

    shown: str
    """How `--help` names it, e.g. "<SAE>/features"."""
    folder: Callable[[Any], Path]
    """The folder, from the job's config."""


class RunInfo(NamedTuple):
    """Where a run lives and its `config.json` as written (for provenance: model, command, date)."""

    folder: Path
    meta: dict[str, Any]


@dataclass(frozen=True)
class Job(Generic[C, R]):
    """One kind of run."""

    name: str
    """The run kind: `config.json`'s `kind`, and the default folder `runs/<name>/<time>`."""
    command: tuple[str, ...]
    """The CLI path, e.g. ("probe", "sweep") for `greyglass probe sweep`."""
    help: str
    """One line for `greyglass --help`."""
    config: type[C]
    """Frozen dataclass of settings; its field docstrings are the flags' help."""
    results: type[R]
    """Dataclass of what `results.json` holds."""
    run: Callable[[LoadedModel | None, C, Path, RunOptions], R]
    """`run(model, config, out, options) -> results`: does the work, writes the run folder."""
    section: Callable[[R, C, RunInfo], Section]
    """The report section (and the terminal summary) for a finished run."""
    description: str = ""
    """A paragraph for the command's `--help`."""
    needs_model: bool | Callable[[C], bool] = True
    """Whether the CLI loads `--model` for it, or a rule on the config (when False `run` gets None)."""
    resume: str | None = None
    """Help for `--resume` where the job can continue an interrupted run folder."""
    default_out: DefaultOut | None = None
    """Where the run goes without --out; None: `runs/<name>/<time>`."""

    def wants_model(self, config: C) -> bool:
        return self.needs_model(config) if callable(self.needs_model) else self.needs_model

    def out_folder(self, config: C) -> Path:
        """The run folder when --out is not given."""
        return self.default_out.folder(config) if self.default_out else default_run_dir(self.name)


class JobRun(NamedTuple, Generic[C, R]):
    """A finished run read back from its folder."""

    job: Job[C, R]
    config: C
    results: R
    info: RunInfo

    def section(self) -> Section:
        return self.job.section(self.results, self.config, self.info)


def run_and_read(job: Job[C, R], lm: LoadedModel | None, config: C, out: Path, options: RunOptions) -> JobRun[C, R]:
    """Run `job` into `out`, then read the folder back as the report will (what the CLI and the demo print)."""
    job.run(lm, config, out, options)
    return read_job_run(job, out)


def read_job_run(job: Job[C, R], folder: str | Path) -> JobRun[C, R]:
    """A run folder of `job` as typed Config and Results; a RecordError names what does not fit."""
    return typed_run(job, folder, *read_run(folder))


def typed_run(job: Job[C, R], folder: str | Path, meta: dict[str, Any], results: dict[str, Any]) -> JobRun[C, R]:
    """A run of `job` from its `config.json` (`meta`) and `results.json` as already read; a folder written in
    another layout (an older greyglass) is a LayoutError saying so, not a RecordError about its fields."""
    if meta.get("kind") != job.name:
        raise GreyglassError(f"{folder} holds a '{meta.get('kind')}' run, not a '{job.name}' run")
    check_layout(folder, meta, job.command)
    config = _record(job.config, meta.get("config", {}), f"{folder}/config.json", "config")
    return JobRun(job, config, _record(job.results, results, f"{folder}/results.json"), RunInfo(Path(folder), meta))


def _record(tp: type[T], data: Any, where: str, path: str = "") -> T:
    """`from_json`, where a value the record's own checks refuse (a Config's `__post_init__`) is a
    RecordError naming the file too, so the report shows the run as unreadable rather than failing."""
    try:
        return from_json(tp, data, where, path)
    except RecordError:
        raise
    except GreyglassError as e:
        raise RecordError(f"{where}: {path + ': ' if path else ''}{e}") from None


@dataclass(frozen=True)
class Tool:
    """A command that makes no run folder of its own: it shows, searches or serves what runs wrote."""

    command: tuple[str, ...]
    """The CLI path, e.g. ("features", "show")."""
    help: str
    """One line for `greyglass --help`."""
    add_arguments: Callable[[argparse.ArgumentParser], None]
    """Adds the command's flags."""
    main: Callable[[argparse.Namespace], int | None]
    """Does the work from the parsed flags; returns the exit status (None: 0)."""
    description: str = ""
    """A paragraph for the command's `--help`."""
