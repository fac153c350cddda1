"""`greyglass eval`: run an alignment eval into a run folder and say what it found."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import add_arguments, from_namespace
from ..runs import default_run_dir
from .formats import PromptFormat
from .run import EvalConfig, run_eval
from .tasks import EVALS, explain


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import add_model_args

    p = sub.add_parser("eval", help="run a behavioural alignment eval (sycophancy, advanced-ai-risk, ...)",
                       description="Ask a model multiple-choice eval items, score each answer by log-probability, "
                       "and write config.json, items.jsonl and results.json (95%% CIs). Evals: "
                       + "; ".join(f"{k}: {v.about}" for k, v in EVALS.items()))
    add_model_args(p)
    add_arguments(p, EvalConfig)
    add_arguments(p, PromptFormat)
    p.add_argument("--probe", metavar="DIR", help="a saved Direction (probe or steering vector): record its score at "
                   "the answer position during the same forward pass and report its AUROC for the behaviour")
    p.add_argument("--out", help="run folder (default: runs/eval/<time>)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..cli import model_from_args
    from ..directions import Direction
    from .local import LocalBackend

    cfg = from_namespace(EvalConfig, args)
    fmt = from_namespace(PromptFormat, args)
    direction = Direction.load(args.probe) if args.probe else None
    backend = LocalBackend(model_from_args(args), probe=direction)
    probe = {"path": str(args.probe), "site": direction.site, "kind": direction.kind} if direction else None
    out = Path(args.out) if args.out else default_run_dir("eval")
    results = run_eval(backend, cfg, fmt, out, resume=args.resume, progress=not args.no_progress, probe=probe)
    print(explain(results))
    print(f"run folder: {out}")
    return 0
