"""The `greyglass` command: one parser, one sub-command per job, thin wrappers over the library.

Each area registers its own sub-commands (`register(subparsers)` in its `cli` module, listed
in `COMMAND_MODULES`). Errors a user can cause print one line and exit with status 2; Ctrl-C
exits with status 130 after the command has saved what it finished.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from .errors import GreyglassError
from .version import __version__

COMMAND_MODULES = [
    "greyglass.models.cli",
    "greyglass.store.cli",
    "greyglass.report.cli",
    "greyglass.sae.cli",
    "greyglass.features.cli",
    "greyglass.evals.cli",
    "greyglass.organism.cli",
    "greyglass.serve.cli",
    "greyglass.probes.cli",
    "greyglass.steer.cli",
    "greyglass.demo",
]


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """--model/--dtype/--device, shared by every command that loads a model."""
    parser.add_argument("--model", default="smollm2-135m-instruct",
                        help="embedded name (smollm2-135m-instruct, gemma3-270m), a local Hugging Face "
                             "folder, a .gguf file, or a hub id (default: smollm2-135m-instruct)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                        help="dtype to run the model in (default: float32)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")


def add_out_args(parser: argparse.ArgumentParser, kind: str, resume: str | None = None, progress: bool = True,
                 what: str = "run folder") -> None:
    """--out, whose default is where `runs.default_run_dir(kind)` puts the run; --resume with its help,
    where the command can resume; --no-progress."""
    parser.add_argument("--out", help=f"{what} (default: runs/{kind}/<time>)")
    if resume:
        parser.add_argument("--resume", action="store_true", help=resume)
    if progress:
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def model_from_args(args: argparse.Namespace):
    from .models import load_model

    return load_model(args.model, dtype=args.dtype, device=args.device)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="greyglass",
        description="Make a language model a grey box: capture activations, train SAEs, probe, "
        "steer, evaluate, and explain the evidence.",
    )
    parser.add_argument("--version", action="version", version=f"greyglass {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except GreyglassError as e:
        print(f"greyglass {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ngreyglass {args.command}: interrupted; finished work is saved "
              "(rerun with --resume where the command has it)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
