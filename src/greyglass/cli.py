"""The `greyglass` command: one parser, one sub-command per job, thin wrappers over the library.

The sub-commands come from the one list in `greyglass.jobs`: a job's command runs it into a run
folder and prints its report section's summary; a tool's runs its `main`. Errors a user can cause
print one line and exit with status 2; Ctrl-C exits with status 130 after the command has saved
what it finished.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .config import add_arguments, from_namespace
from .errors import GreyglassError
from .flags import add_model_args, add_out_args, model_from_args  # sae/cli.py imports them from here
from .job import Job, RunOptions, Tool, run_and_read
from .jobs import GROUPS, JOBS
from .tools import TOOLS
from .version import __version__


def add_job(sub: argparse._SubParsersAction, job: Job) -> None:
    """The sub-command of one job: --model where it loads one, its Config's fields, --out/--resume/--no-progress."""
    p = sub.add_parser(job.command[-1], help=job.help.replace("%", "%%"), description=job.description or job.help)
    if job.needs_model is not False:
        add_model_args(p)
    add_arguments(p, job.config, required=True)
    add_out_args(p, job.name, resume=job.resume, default=job.default_out.shown if job.default_out else None)
    p.set_defaults(func=lambda args: run_job(job, args))


def run_job(job: Job, args: argparse.Namespace) -> int:
    """Run `job` from parsed flags into its run folder and print the section the report will show."""
    cfg = from_namespace(job.config, args)
    lm = model_from_args(args) if job.wants_model(cfg) else None
    out = Path(args.out) if args.out else job.out_folder(cfg)
    run = run_and_read(job, lm, cfg, out, RunOptions(progress=not args.no_progress, resume=getattr(args, "resume", False)))
    print(run.section().summary())
    print(f"run folder: {out}")
    return 0


def add_tool(sub: argparse._SubParsersAction, tool: Tool) -> None:
    p = sub.add_parser(tool.command[-1], help=tool.help.replace("%", "%%"), description=tool.description or tool.help)
    tool.add_arguments(p)
    p.set_defaults(func=tool.main)


def _group(sub: argparse._SubParsersAction, groups: dict[tuple[str, ...], argparse._SubParsersAction],
           path: tuple[str, ...]) -> argparse._SubParsersAction:
    """The sub-parsers of the command group `path` (e.g. ("probe",)), made on first use."""
    if not path:
        return sub
    if path not in groups:
        parent = _group(sub, groups, path[:-1])
        p = parent.add_parser(path[-1], help=GROUPS.get(" ".join(path), ""))
        groups[path] = p.add_subparsers(dest="_".join(path) + "_command", metavar="JOB", required=True)
    return groups[path]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="greyglass",
        description="Make a language model a grey box: capture activations, train SAEs, probe, "
        "steer, evaluate, and explain the evidence.",
    )
    parser.add_argument("--version", action="version", version=f"greyglass {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[tuple[str, ...], argparse._SubParsersAction] = {}
    for job in JOBS:
        add_job(_group(sub, groups, job.command[:-1]), job)
    for tool in TOOLS:
        add_tool(_group(sub, groups, tool.command[:-1]), tool)
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
