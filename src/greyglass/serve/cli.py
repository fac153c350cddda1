"""`greyglass serve [RUNS_DIR]`: start the browser on 127.0.0.1."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="browse runs, features, probes, steering and evals in a local web app",
                       description="Serve a local web app over the run folders under RUNS_DIR. It binds to "
                       "127.0.0.1 (this machine only) unless --host says otherwise.")
    p.add_argument("runs_dir", nargs="?", default="runs", metavar="RUNS_DIR", help="folder holding run folders (default: runs)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: only this machine)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument("--model", default=None,
                   help="model for text and steering pages (default: each run's own model, else the embedded default)")
    p.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from .app import create_app
    from .listen import serve_until_stopped

    loopback = args.host in ("127.0.0.1", "localhost", "::1")
    app = create_app(args.runs_dir, args.model, hosts=[args.host, "localhost", "127.0.0.1"] if loopback else None)
    serve_until_stopped(app, args.host, args.port,
                        announce=lambda url: print(f"greyglass browser on {url}/ (Ctrl-C stops it)", flush=True))
    return 0
