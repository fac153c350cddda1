"""The probe jobs: `greyglass probe sweep|transfer|lying`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..job import Job, RunOptions
from .config import LyingConfig, LyingResults, SweepConfig, SweepResults, TransferConfig, TransferResults
from .report import lying_section, sweep_section, transfer_section

if TYPE_CHECKING:
    from ..models.lm import LoadedModel


def _sweep(lm: LoadedModel, cfg: SweepConfig, out: Path, opts: RunOptions) -> SweepResults:
    from .sweep import sweep

    return sweep(lm, cfg, out, opts.progress)


def _transfer(lm: LoadedModel, cfg: TransferConfig, out: Path, opts: RunOptions) -> TransferResults:
    from .transfer import transfer

    return transfer(lm, cfg, out, opts.progress)


def _lying(lm: LoadedModel, cfg: LyingConfig, out: Path, opts: RunOptions) -> LyingResults:
    from .lying import localise_lying

    return localise_lying(lm, cfg, out, opts.progress)


PROBE_SWEEP = Job(
    name="probe_sweep", command=("probe", "sweep"), config=SweepConfig, results=SweepResults, run=_sweep,
    section=sweep_section,
    help="fit a truth probe at each layer; held-out accuracy, AUROC, TPR@1%FPR with CIs",
    description="Fit a probe at each layer on true/false statements and measure it on held-out statements. "
    "Writes results.json, accuracy_by_layer.svg and every probe.")
PROBE_TRANSFER = Job(
    name="probe_transfer", command=("probe", "transfer"), config=TransferConfig, results=TransferResults,
    run=_transfer, section=transfer_section, help="train on each statement set, test on each other set",
    description="The generalisation matrix: held-out accuracy of a probe trained on each set (rows) on every "
    "set (columns).")
PROBE_LYING = Job(
    name="probe_lying", command=("probe", "lying"), config=LyingConfig, results=LyingResults, run=_lying,
    section=lying_section, help="where is an instructed lie decided? behaviour, probe flip, activation patching",
    description="Ask true/false questions under an honest and several lying instructions; report how often the "
    "model lies, where a truth probe flips, and which layers and attention heads restore the honest answer when "
    "patched in (Campbell et al.).")

JOBS = (PROBE_SWEEP, PROBE_TRANSFER, PROBE_LYING)
GROUPS = {"probe": "linear probes: layer sweeps, transfer between datasets, lying localisation"}
