"""The one list of commands that make no run folder of their own (`TOOLS`, in CLI order), and those of
them that belong to no one area: `greyglass models`, `report`, `serve` and `demo` (which runs a list of
jobs, each into its own folder).

Each `main` imports what it needs when it runs, so `greyglass --help`, which imports every tool,
loads neither torch nor the web stack. The list is apart from the jobs' (`jobs.py`) because the
report and the browser read that one.
"""

from __future__ import annotations

import argparse

from .behaviour.jobs import TOOLS as EVAL_TOOLS
from .interop.jobs import TOOLS as INTEROP_TOOLS
from .job import Tool
from .latents.jobs import TOOLS as FEATURE_TOOLS
from .store.jobs import TOOLS as STORE_TOOLS


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    """A tool without flags."""


def _list_models(args: argparse.Namespace) -> int:
    import importlib.util

    from .models.loader import DEFAULT_MODEL, EMBEDDED

    for name, emb in EMBEDDED.items():
        installed = importlib.util.find_spec(emb.package) is not None
        mark = "installed" if installed else f"not installed ({emb.install})"
        default = " [default]" if name == DEFAULT_MODEL else ""
        print(f"{name}{default}: {emb.about}; {mark}")
    return 0


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", help="run folders, or folders that contain run folders")
    parser.add_argument("--out", default="report.html", help="the HTML file to write (default: report.html)")
    parser.add_argument("--title", help="the report's title")


def _write_report(args: argparse.Namespace) -> int:
    from .report.build import build_report

    out = build_report(args.runs, args.out, args.title)
    print(f"report written to {out.resolve()}")
    return 0


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs_dir", nargs="?", default="runs", metavar="RUNS_DIR",
                        help="folder holding run folders (default: runs)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: only this machine)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    parser.add_argument("--model", default=None,
                        help="model for text and steering pages (default: each run's own model, else the embedded default)")


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .serve.app import create_app

    loopback = args.host in ("127.0.0.1", "localhost", "::1")
    app = create_app(args.runs_dir, args.model, hosts=[args.host, "localhost", "127.0.0.1"] if loopback else None)
    print(f"greyglass browser on http://{args.host}:{args.port}/ (Ctrl-C stops it)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    from .flags import add_model_args

    add_model_args(parser)
    parser.add_argument("--out", default="runs/demo", help="root folder for the demo's runs (default: runs/demo)")
    parser.add_argument("--tokens", type=int, default=50_000, help="tokens to capture (default: 50000)")


def _demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .flags import model_from_args
    from .demo import demo_runs, run_demo
    from .report.build import build_report

    lm, root = model_from_args(args), Path(args.out)
    run_demo(lm, root, demo_runs(root, lm.n_layers, args.tokens))
    report = build_report([root], root / "report.html", title=f"What we found inside {lm.name}")
    print(f"\ndemo finished; all outputs are under {root}/")
    print(f"evidence report: {report.resolve()}")
    return 0


MODELS = Tool(command=("models",), help="list the embedded default models", add_arguments=_no_arguments,
              main=_list_models, description="The embedded models, which one is the default, and whether each "
              "one's weights package is installed (and how to install it).")
REPORT = Tool(command=("report",), help="write a self-contained HTML evidence report from run folders",
              add_arguments=_report_arguments, main=_write_report,
              description="Read run folders (or folders containing them) and write one HTML file that opens offline "
              "and prints cleanly to PDF.")
SERVE = Tool(command=("serve",), help="browse runs, features, probes, steering and evals in a local web app",
             add_arguments=_serve_arguments, main=_serve,
             description="Serve a local web app over the run folders under RUNS_DIR. It binds to 127.0.0.1 (this "
             "machine only) unless --host says otherwise.")

DEMO = Tool(command=("demo",), help="run the main job on the default model (a few minutes)",
            add_arguments=_demo_arguments, main=_demo,
            description="Capture activations, train and evaluate an SAE, measure its absorption and features, fit a "
            "truth probe and run a sycophancy eval, then write the evidence report over all of it (greyglass.demo).")

TOOLS: tuple[Tool, ...] = (*STORE_TOOLS, *FEATURE_TOOLS, *EVAL_TOOLS, *INTEROP_TOOLS, MODELS, REPORT, SERVE, DEMO)
