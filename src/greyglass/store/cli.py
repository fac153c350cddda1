"""`greyglass capture` and `greyglass info`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..config import add_arguments, from_namespace
from ..data.corpus import CorpusConfig
from ..runs import default_run_dir, write_config, write_results
from .writer import CaptureConfig, capture, shortfall_note
from .reader import ActivationStore


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import add_model_args, add_out_args

    p = sub.add_parser("capture", help="capture activations at sites over a corpus into a store",
                       description="Run the model over a corpus and store activations at the given "
                       "sites as sharded safetensors (a run folder with manifest.json).")
    add_model_args(p)
    p.add_argument("--site", dest="sites", action="append", metavar="SITE",
                   help="site to capture, e.g. blocks.15.hook_resid_post or resid_post.15 (repeatable)")
    add_arguments(p, CaptureConfig, skip=("sites",))
    add_arguments(p, CorpusConfig, skip=("split",))
    p.add_argument("--split", choices=("train", "heldout", "all"), default="train",
                   help="documents to capture: train (default: every 20th document is left for held-out "
                   "evaluation, which `greyglass sae eval` reads), heldout, or all (an SAE trained on it cannot be "
                   "evaluated on held-out text of this corpus)")
    add_out_args(p, "capture", resume="continue an interrupted capture in --out", what="store folder")
    p.set_defaults(func=run_capture)

    i = sub.add_parser("info", help="describe an activation store")
    i.add_argument("store", help="store folder")
    i.set_defaults(func=run_info)


def run_capture(args: argparse.Namespace) -> int:
    from ..cli import model_from_args

    overrides = {"sites": tuple(args.sites)} if args.sites else {}
    cfg = from_namespace(CaptureConfig, args, **overrides)
    corpus = from_namespace(CorpusConfig, args)
    out = Path(args.out) if args.out else default_run_dir("capture")
    lm = model_from_args(args)
    start = time.perf_counter()
    capture(lm, cfg, corpus, out, resume=args.resume, progress=not args.no_progress)
    store = ActivationStore(out)
    write_config(out, "capture", model=lm.provenance(), capture=cfg, corpus=corpus,
                 corpus_fingerprint=store.manifest["corpus"]["fingerprint"])
    short = shortfall_note(store.manifest)
    write_results(out, {"n_tokens": store.n_tokens, "sites": store.sites, "shards": len(store.manifest["shards"]),
                        "corpus_ran_out": short is not None, "seconds": round(time.perf_counter() - start, 2)})
    print(store.describe())
    if short:
        print(f"note: {short}", file=sys.stderr)
    return 0


def run_info(args: argparse.Namespace) -> int:
    print(ActivationStore(args.store).describe())
    return 0
