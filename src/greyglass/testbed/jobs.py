"""The testbed job: `greyglass testbed ORGANISM [--control FOLDER]`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..job import Job, RunOptions
from .config import TestbedConfig, TestbedResults
from .report import testbed_section

if TYPE_CHECKING:
    from ..models.lm import LoadedModel


def _testbed(lm: LoadedModel | None, cfg: TestbedConfig, out: Path, opts: RunOptions) -> TestbedResults:
    from .run import run_testbed

    return run_testbed(cfg, out, opts.progress)


TESTBED = Job(
    name="testbed", command=("testbed",), config=TestbedConfig, results=TestbedResults, run=_testbed,
    section=testbed_section, help="run the matching tools on a model organism and its control, and judge them",
    description="For a taught organism (organism train --behaviour instructed-liar|sycophant|ab-competent) and its "
    "control (the parent model, or --control another organism), run lying localisation, the sycophancy eval, CAA "
    "steering and the generic probe as they match the behaviour, and write one table: the behaviour as measured, "
    "what each tool concluded, and whether it was right.",
    # The organism and control folders name their models; a --model flag could only contradict them.
    needs_model=False)

JOBS = (TESTBED,)
