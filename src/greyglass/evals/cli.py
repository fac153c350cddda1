"""`greyglass eval`: run an alignment eval into a run folder and say what it found."""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from ..config import add_arguments, from_namespace
from ..runs import default_run_dir
from ..errors import GreyglassError
from ..steer.config import COEF_HELP
from .cot import CotConfig, explain_cot, run_cot
from .formats import PromptFormat
from .pressure import PressureConfig, explain_pressure, run_pressure
from .remote import HttpBackend, HttpConfig
from .run import EvalConfig, run_eval
from .tasks import EVALS, explain


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import add_model_args, add_out_args

    p = sub.add_parser("eval", help="run a behavioural alignment eval (sycophancy, advanced-ai-risk, ...)",
                       description="Ask a model multiple-choice eval items, score each answer by log-probability, "
                       "and write config.json, items.jsonl and results.json (95% CIs). Evals: "
                       + "; ".join(f"{k}: {v.about}" for k, v in EVALS.items()))
    add_model_args(p)
    add_arguments(p, EvalConfig)
    add_arguments(p, PromptFormat)
    add_arguments(p, HttpConfig)
    p.add_argument("--probe", metavar="DIR", help="a saved Direction (probe or steering vector): record its score at "
                   "the answer position during the same forward pass and report its AUROC for the behaviour")
    add_out_args(p, "eval", resume="continue an interrupted run in --out")
    p.set_defaults(func=run)

    generating = {
        "eval_cot": (CotConfig, run_cot, explain_cot, "chain-of-thought faithfulness (early answering, mistakes, filler)",
                     "Lanham et al. 2023: generate a chain of thought, then truncate it, add a mistake, or replace "
                     "it with filler, and measure how often the answer stays the same."),
        "eval_pressure": (PressureConfig, run_pressure, explain_pressure,
                          "agent pressure scenarios (insider trading, customer funds)",
                          "Sample an agent's actions in a pressure scenario, with and without an instruction to weigh "
                          "ethical and legal consequences, and classify them by documented rules."),
    }
    for kind, (cls, runner, explainer, short, long) in generating.items():
        g = sub.add_parser(kind.replace("_", "-"), help=short, description=long)
        add_model_args(g)
        add_arguments(g, cls)
        add_out_args(g, kind, resume="continue an interrupted run in --out")
        g.set_defaults(func=partial(run_generating_eval, cls=cls, kind=kind, runner=runner, explainer=explainer))

    s = sub.add_parser("serve-model", help="serve a local model (optionally steered) over an OpenAI-compatible API",
                       description="An OpenAI-compatible HTTP server (/v1/completions with echo and logprobs, "
                       "/v1/chat/completions, /v1/models) for a local model, so any harness can evaluate it, "
                       "optionally with a steering vector added.")
    add_model_args(s)
    s.add_argument("--steer", metavar="DIR", help="a saved Direction to add to the residual stream")
    s.add_argument("--layer", type=int, help="add it at blocks.LAYER.hook_resid_post (default: the direction's site)")
    s.add_argument("--coef", type=float, default=0.5, help=COEF_HELP)
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    s.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    s.add_argument("--name", help="model name reported to clients (default: the model's name)")
    s.add_argument("--max-seconds", type=float, help="stop by itself after this long (for scripts and tests)")
    s.set_defaults(func=serve)


def run(args: argparse.Namespace) -> int:
    from ..cli import model_from_args
    from ..directions import Direction
    from .local import LocalBackend

    cfg = from_namespace(EvalConfig, args)
    fmt = from_namespace(PromptFormat, args)
    direction = Direction.load(args.probe) if args.probe else None
    out = Path(args.out) if args.out else default_run_dir("eval")
    if hasattr(args, "url"):
        if direction is not None:
            raise GreyglassError("--probe needs the local model (the server does not return activations); drop --url")
        backend = HttpBackend(from_namespace(HttpConfig, args, cache=getattr(args, "cache", None)
                                             or str(out / "responses.jsonl")))
    else:
        backend = LocalBackend(model_from_args(args), probe=direction)
    probe = {"path": str(args.probe), "site": direction.site, "kind": direction.kind} if direction else None
    results = run_eval(backend, cfg, fmt, out, resume=args.resume, progress=not args.no_progress, probe=probe)
    print(explain(results))
    print(f"run folder: {out}")
    return 0


def run_generating_eval(args: argparse.Namespace, cls: type, kind: str, runner, explainer) -> int:
    """`eval-cot` and `eval-pressure`: build the config, run into the run folder, explain."""
    from ..cli import model_from_args

    cfg = from_namespace(cls, args)
    out = Path(args.out) if args.out else default_run_dir(kind)
    results = runner(model_from_args(args), cfg, out, resume=args.resume, progress=not args.no_progress)
    print(explainer(results))
    print(f"run folder: {out}")
    return 0


def serve(args: argparse.Namespace) -> int:
    from ..cli import model_from_args
    from ..directions import Direction
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
