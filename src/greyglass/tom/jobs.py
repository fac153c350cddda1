"""The theory-of-mind job: `greyglass tom`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..job import Job, RunOptions
from .config import TomConfig, TomResults
from .report import tom_section

if TYPE_CHECKING:
    from ..models.lm import LoadedModel


def _tom(lm: LoadedModel, cfg: TomConfig, out: Path, opts: RunOptions) -> TomResults:
    from .run import run_tom

    return run_tom(lm, cfg, out, opts.progress)


TOM = Job(
    name="tom", command=("tom",), config=TomConfig, results=TomResults, run=_tom, section=tom_section,
    help="theory of mind: belief vs reality in answers, probes per layer and head, steering",
    description="Generate false-belief stories (each in a true-belief and a false-belief version), measure whether "
    "the model answers for the agent's belief or for reality, where linear probes read each (per layer, and per "
    "attention head in the best layers, with shuffled-label and irrelevant-feature controls), and whether steering "
    "along the belief direction moves belief answers more than a random direction (Zhu et al. 2024).")

JOBS = (TOM,)
