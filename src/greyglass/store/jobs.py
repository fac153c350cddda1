"""The activation-store commands: the `capture` job and the `info` tool."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..job import Job, RunOptions, Tool, read_job_run
from ..records import RecordError
from ..runs import RESULTS, LayoutError
from .config import CaptureResults, CaptureRunConfig
from .report import capture_section

if TYPE_CHECKING:
    from ..models.lm import LoadedModel


def _capture(lm: LoadedModel, cfg: CaptureRunConfig, out: Path, opts: RunOptions) -> CaptureResults:
    from .writer import run_capture

    return run_capture(lm, cfg, out, resume=opts.resume, progress=opts.progress)


def _info_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", help="store folder")


def _info(args: argparse.Namespace) -> int:
    """A finished capture run is described by its report section (what the report says, not a second wording);
    a store without one (unfinished, or written by `capture()` alone) by its manifest."""
    from .reader import ActivationStore

    store = ActivationStore(args.store)
    if store.complete and (store.folder / RESULTS).is_file():
        try:
            print(f"activation store {store.folder}: complete\n{read_job_run(CAPTURE, store.folder).section().summary()}")
            return 0
        except (LayoutError, RecordError):
            pass  # a run folder this greyglass does not read: the manifest still says what the store holds
    print(store.summary())
    return 0


CAPTURE = Job(
    name="capture", command=("capture",), config=CaptureRunConfig, results=CaptureResults, run=_capture,
    section=capture_section, help="capture activations at sites over a corpus into a store",
    description="Run the model over a corpus and store activations at the given sites as sharded safetensors "
    "(a run folder with manifest.json). By default only the train split is read: every 20th document is left "
    "for held-out evaluation, which `greyglass sae eval` reads.",
    resume="continue an interrupted capture in --out (the same settings give the same shards)")
INFO = Tool(
    command=("info",), help="describe an activation store", add_arguments=_info_arguments, main=_info,
    description="The store's manifest in plain words: model, sites, tokens, corpus, storage, and whether it is "
    "complete (an interrupted capture continues with `greyglass capture --resume`).")

JOBS = (CAPTURE,)
TOOLS = (INFO,)
