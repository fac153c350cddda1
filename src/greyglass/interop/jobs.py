"""The interoperability tools: `greyglass export inspect` (an eval run as an inspect_ai log)."""

from __future__ import annotations

import argparse

from ..errors import GreyglassError
from ..job import Tool

INSTALL = "pip install 'greyglass[inspect]'"


def require_inspect() -> None:
    """Raise a GreyglassError saying how to install inspect_ai when it is missing."""
    import importlib.util

    if importlib.util.find_spec("inspect_ai") is None:
        raise GreyglassError(f"this needs inspect_ai, which is not installed: {INSTALL}")


def _export_inspect_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN_FOLDER", help="a finished eval, eval-cot or eval-pressure run folder")
    p.add_argument("-o", "--out", required=True, metavar="FILE",
                   help="the inspect log to write: FILE.eval (inspect's own format) or FILE.json")


def _export_inspect(args: argparse.Namespace) -> int:
    require_inspect()
    from .inspect_log import export_inspect

    out = export_inspect(args.run, args.out)
    print(f"inspect log written to {out}; open it with: inspect view --log-dir {out.resolve().parent}")
    return 0


EXPORT_INSPECT = Tool(
    command=("export", "inspect"), add_arguments=_export_inspect_arguments, main=_export_inspect,
    help="write an eval run as an inspect_ai eval log (for inspect view)",
    description="Write a finished eval, eval-cot or eval-pressure run folder as an inspect_ai eval log: one sample "
    "per scored item with its prompt, choices, target, scores and greyglass's extras (position-debiased score, probe "
    "score) in its metadata, and greyglass's figures with their 95% intervals as the results (docs/interop.md).")

GROUPS = {"export": "write greyglass runs in other tools' formats (inspect_ai logs)"}
TOOLS = (EXPORT_INSPECT,)
