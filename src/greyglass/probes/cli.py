"""`greyglass probe sweep|transfer|lying`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import add_arguments, from_namespace
from ..runs import default_run_dir
from .lying import LyingConfig
from .sweep import SweepConfig
from .transfer import TransferConfig


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import add_model_args, add_out_args

    p = sub.add_parser("probe", help="linear probes: layer sweeps, transfer between datasets, lying localisation")
    jobs = p.add_subparsers(dest="probe_command", metavar="JOB", required=True)

    s = jobs.add_parser("sweep", help="fit a truth probe at each layer; held-out accuracy, AUROC, TPR@1%%FPR with CIs",
                        description="Fit a probe at each layer on true/false statements and measure it on "
                        "held-out statements. Writes results.json, accuracy_by_layer.svg and every probe.")
    add_model_args(s)
    add_arguments(s, SweepConfig)
    add_out_args(s, "probe_sweep")
    s.set_defaults(func=run_sweep)

    t = jobs.add_parser("transfer", help="train on each statement set, test on each other set",
                        description="The generalisation matrix: held-out accuracy of a probe trained on "
                        "each set (rows) on every set (columns).")
    add_model_args(t)
    add_arguments(t, TransferConfig)
    add_out_args(t, "probe_transfer")
    t.set_defaults(func=run_transfer)

    ly = jobs.add_parser("lying", help="where is an instructed lie decided? behaviour, probe flip, activation patching",
                         description="Ask true/false questions under an honest and several lying instructions; "
                         "report how often the model lies, where a truth probe flips, and which layers and "
                         "attention heads restore the honest answer when patched in (Campbell et al.).")
    add_model_args(ly)
    add_arguments(ly, LyingConfig)
    add_out_args(ly, "probe_lying")
    ly.set_defaults(func=run_lying)


def _run(args: argparse.Namespace, cfg, kind: str, job, describe) -> tuple[dict, Path]:
    """Load the model, run `job` into the run folder, print its plain-words summary and plot path."""
    from ..cli import model_from_args

    out = Path(args.out) if args.out else default_run_dir(kind)
    results = job(model_from_args(args), cfg, out, progress=not args.no_progress)
    print(describe(results))
    print(f"plot: {out / results['plot']}")
    return results, out


def run_sweep(args: argparse.Namespace) -> int:
    from .sweep import describe, sweep

    results, out = _run(args, from_namespace(SweepConfig, args), "probe_sweep", sweep, describe)
    print(f"best probe: {out / results['best_probe']}")
    return 0


def run_transfer(args: argparse.Namespace) -> int:
    from .transfer import describe, transfer

    overrides = {"data": tuple(args.data)} if getattr(args, "data", None) else {}
    _run(args, from_namespace(TransferConfig, args, **overrides), "probe_transfer", transfer, describe)
    return 0


def run_lying(args: argparse.Namespace) -> int:
    from .lying import describe, localise_lying

    _run(args, from_namespace(LyingConfig, args), "probe_lying", localise_lying, describe)
    return 0
