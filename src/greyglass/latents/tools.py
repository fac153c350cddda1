"""`greyglass features show|html|search`: commands that read a feature database and write no run folder.

Their flags and work are here; `jobs.py` makes them Tools. Everything heavy is imported inside
the functions, so `greyglass --help` stays cheap.
"""

from __future__ import annotations

import argparse

from ..errors import GreyglassError


def add_show_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sae", help="SAE folder or features folder")
    p.add_argument("latent", type=int)


def show(args: argparse.Namespace) -> None:
    from .dashboard import latent_summary
    from .db import FeatureDB, features_dir

    print(latent_summary(FeatureDB(features_dir(args.sae)), args.latent))


def add_html_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sae", help="SAE folder or features folder")
    p.add_argument("--out", required=True, help="folder for the pages")
    p.add_argument("--latent", type=int, action="append", help="only these latents (repeatable; default: all that fired)")


def html(args: argparse.Namespace) -> None:
    from .dashboard import write_html
    from .db import FeatureDB, features_dir

    out = write_html(FeatureDB(features_dir(args.sae)), args.out, args.latent)
    print(f"dashboards: {out / 'index.html'}")


def add_search_arguments(p: argparse.ArgumentParser) -> None:
    from ..flags import add_model_args

    p.add_argument("sae", help="SAE folder (features built)")
    p.add_argument("--fires-on", metavar="WORD", help="latents whose top contexts centre on this token")
    p.add_argument("--query", help="full-text search over labels, explanations and tokens (FTS5 syntax)")
    p.add_argument("--text", help="latents most active on this text (runs the model)")
    p.add_argument("--limit", type=int, default=10, help="latents to list per search (default: 10)")
    add_model_args(p)


def search(args: argparse.Namespace) -> None:
    from .db import FeatureDB, features_dir

    if not (args.fires_on or args.query or args.text):
        raise GreyglassError("give --fires-on WORD, --query WORDS or --text TEXT")
    db = FeatureDB(features_dir(args.sae))
    if args.fires_on:
        print(f"latents firing on {args.fires_on!r}:")
        for r in db.fires_on(args.fires_on, args.limit):
            print(f"  {r['latent']:>6}  {r['n']:>3} contexts  max {r['max_act']:.3g}  {r['label']}")
    if args.query:
        print(f"latents matching {args.query!r}:")
        for r in db.search(args.query, args.limit):
            print(f"  {r['latent']:>6}  density {r['density']:.4%}  {r['label']}")
    if args.text:
        _print_text_latents(args, db)


def _print_text_latents(args: argparse.Namespace, db) -> None:
    from ..flags import model_from_args
    from ..sae.io import load_sae
    from .source import text_latents

    acts = text_latents(model_from_args(args), load_sae(db.meta["sae"]), [args.text])[0]
    if not acts.any():
        raise GreyglassError(f"no latent fires on {args.text!r}: its tokens after the first (BOS, or the attention "
                             "sink the SAE was trained without) activate none; give a longer text")
    top = acts.topk(min(args.limit, len(acts)))
    labels = {r["latent"]: r["label"] for r in db.latent_rows()}
    print("latents most active on the text:")
    for v, j in zip(top.values.tolist(), top.indices.tolist()):
        print(f"  {j:>6}  {v:8.3g}  {labels[j]}")
