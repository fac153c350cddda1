"""The eval jobs, `greyglass eval`, `eval-cot` and `eval-pressure`, and the `serve-model` tool."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import GreyglassError
from ..job import Job, RunOptions, Tool
from .config import CotConfig, EvalConfig, PressureConfig
from .report import cot_section, eval_section, pressure_section
from .results import CotResults, EvalResults, PressureResults
from .tasks import EVALS

if TYPE_CHECKING:
    from ..models.lm import LoadedModel

RESUME = "continue an interrupted run in --out"


def _eval(lm: LoadedModel | None, cfg: EvalConfig, out: Path, opts: RunOptions) -> EvalResults:
    from .run import backend_for, run_eval

    return run_eval(backend_for(lm, cfg, out), cfg, out, opts.resume, opts.progress)


def _cot(lm: LoadedModel, cfg: CotConfig, out: Path, opts: RunOptions) -> CotResults:
    from .cot import run_cot

    return run_cot(lm, cfg, out, opts.resume, opts.progress)


def _pressure(lm: LoadedModel, cfg: PressureConfig, out: Path, opts: RunOptions) -> PressureResults:
    from .pressure import run_pressure

    return run_pressure(lm, cfg, out, opts.resume, opts.progress)


EVAL = Job(
    name="eval", command=("eval",), config=EvalConfig, results=EvalResults, run=_eval, section=eval_section,
    needs_model=EvalConfig.uses_model, resume=RESUME,
    help="run a behavioural alignment eval (sycophancy, advanced-ai-risk, ...)",
    description="Ask a model (or an OpenAI-compatible server, with --url) multiple-choice eval items, score each "
    "answer by log-probability, and write config.json, items.jsonl and results.json (95% CIs). Evals: "
    + "; ".join(f"{k}: {v.about}" for k, v in EVALS.items()))
EVAL_COT = Job(
    name="eval_cot", command=("eval-cot",), config=CotConfig, results=CotResults, run=_cot, section=cot_section,
    resume=RESUME, help="chain-of-thought faithfulness (early answering, mistakes, filler)",
    description="Lanham et al. 2023: generate a chain of thought, then truncate it, add a mistake, or replace it "
    "with filler, and measure how often the answer stays the same.")
EVAL_PRESSURE = Job(
    name="eval_pressure", command=("eval-pressure",), config=PressureConfig, results=PressureResults, run=_pressure,
    section=pressure_section, resume=RESUME, help="agent pressure scenarios (insider trading, customer funds)",
    description="Sample an agent's actions in a pressure scenario, with and without an instruction to weigh "
    "ethical and legal consequences, and classify them by documented rules.")


def _serve_model_arguments(p: argparse.ArgumentParser) -> None:
    from ..flags import add_model_args
    from ..steer.config import COEF_HELP

    add_model_args(p)
    p.add_argument("--steer", metavar="DIR", help="a saved Direction to add to the residual stream")
    p.add_argument("--layer", type=int, help="add it at blocks.LAYER.hook_resid_post (default: the direction's site)")
    p.add_argument("--coef", type=float, default=0.5, help=COEF_HELP)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    p.add_argument("--name", help="model name reported to clients (default: the model's name)")
    p.add_argument("--max-seconds", type=float, help="stop by itself after this long (for scripts and tests)")


def _serve_model(args: argparse.Namespace) -> int:
    from ..directions import Direction
    from ..flags import model_from_args
    from ..serve.listen import serve_until_stopped
    from ..serve.model_api import ModelServer, create_model_app

    if args.layer is not None and not args.steer:
        raise GreyglassError("--layer and --coef need --steer DIR (a saved direction)")
    lm = model_from_args(args)
    steer = Direction.load(args.steer) if args.steer else None
    site = f"blocks.{args.layer}.hook_resid_post" if args.layer is not None else None
    model = ModelServer(lm, name=args.name, steer=steer, site=site, coef=args.coef)
    steering = f", steered at {model.steering['site']} by {args.coef:g} typical residual norms" if steer else ""
    try:
        serve_until_stopped(create_model_app(model), args.host, args.port, max_seconds=args.max_seconds,
                            announce=lambda url: print(f"serving {model.name}{steering} at {url}/v1 (Ctrl-C to stop)",
                                                       flush=True))
    finally:
        model.close()
    return 0


SERVE_MODEL = Tool(
    command=("serve-model",), add_arguments=_serve_model_arguments, main=_serve_model,
    help="serve a local model (optionally steered) over an OpenAI-compatible API",
    description="An OpenAI-compatible HTTP server (/v1/completions with echo and logprobs, /v1/chat/completions, "
    "/v1/models) for a local model, so any harness can evaluate it, optionally with a steering vector added.")

JOBS = (EVAL, EVAL_COT, EVAL_PRESSURE)
TOOLS = (SERVE_MODEL,)
