"""`greyglass models`: list the embedded models and whether their weights are installed."""

from __future__ import annotations

import argparse
import importlib.util

from .loader import DEFAULT_MODEL, EMBEDDED


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the embedded default models")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for name, emb in EMBEDDED.items():
        installed = importlib.util.find_spec(emb.package) is not None
        mark = "installed" if installed else f"not installed ({emb.install})"
        default = " [default]" if name == DEFAULT_MODEL else ""
        print(f"{name}{default}: {emb.about}; {mark}")
    return 0
