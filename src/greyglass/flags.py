"""The flags several commands share: --model/--dtype/--device (and the model they name), --out/--resume/--no-progress.

Here rather than in `cli.py` because the areas' jobs and tools use them, and `cli.py` imports
every area's jobs: an area importing `cli` would close an import cycle. Torch-free to import
(`greyglass --help` adds these flags); `model_from_args` imports the loader when called.
"""

from __future__ import annotations

import argparse

from .models.dtypes import DTYPES


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """--model/--dtype/--device, shared by every command that loads a model."""
    parser.add_argument("--model", default="smollm2-135m-instruct",
                        help="embedded name (smollm2-135m-instruct, gemma3-270m), a local Hugging Face "
                             "folder, a .gguf file, or a hub id (default: smollm2-135m-instruct)")
    parser.add_argument("--dtype", default="float32", choices=DTYPES,
                        help="dtype to run the model in (default: float32)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")


def add_out_args(parser: argparse.ArgumentParser, kind: str, resume: str | None = None, progress: bool = True,
                 what: str = "run folder", default: str | None = None) -> None:
    """--out, whose default is where `runs.default_run_dir(kind)` puts the run (or `default`); --resume with
    its help, where the command can resume; --no-progress."""
    parser.add_argument("--out", help=f"{what} (default: {default or f'runs/{kind}/<time>'})")
    if resume:
        parser.add_argument("--resume", action="store_true", help=resume)
    if progress:
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def model_from_args(args: argparse.Namespace):
    """The model that --model/--dtype/--device name."""
    from .models.loader import load_model

    return load_model(args.model, dtype=args.dtype, device=args.device)
