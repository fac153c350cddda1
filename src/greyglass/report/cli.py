"""`greyglass report RUN... --out report.html`."""

from __future__ import annotations

import argparse

from .build import build_report


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML evidence report from run folders",
                       description="Read run folders (or folders containing them) and write one HTML file that "
                       "opens offline and prints cleanly to PDF.")
    p.add_argument("runs", nargs="+", help="run folders, or folders that contain run folders")
    p.add_argument("--out", default="report.html", help="the HTML file to write (default: report.html)")
    p.add_argument("--title", help="the report's title")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = build_report(args.runs, args.out, args.title)
    print(f"report written to {out.resolve()}")
    return 0
