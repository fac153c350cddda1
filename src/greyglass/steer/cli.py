"""`greyglass steer`, `greyglass steer-vector`, `greyglass steer-effect`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import add_arguments, from_namespace
from ..errors import GreyglassError
from ..runs import default_run_dir, write_config, write_results
from .effect import CAA_BEHAVIORS, EffectConfig

COEF_HELP = ("steering strength in typical residual norms at the site: the unit direction (in the model's own space) "
             "times COEF times the median residual norm there; 0.1 nudges, 1 adds as much as the stream holds "
             "(default: 0.5)")


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import add_model_args, add_out_args

    s = sub.add_parser("steer", help="print baseline and steered generations side by side",
                       description="Add a saved direction (steering vector or probe) to the residual stream, "
                       "COEF typical residual norms long, and compare greedy generations with and without it.")
    add_model_args(s)
    s.add_argument("--vector", required=True, help="a saved direction folder (steer-vector output, or a probe)")
    s.add_argument("--layer", type=int, action="append",
                   help="layer(s) to steer at (resid_post; repeatable; default: the vector's own site)")
    s.add_argument("--coef", type=float, default=0.5, help=COEF_HELP)
    s.add_argument("--prompt", action="append", required=True, help="prompt (repeatable)")
    s.add_argument("--max-new-tokens", type=int, default=40, help="tokens to generate (default: 40)")
    add_out_args(s, "steer", progress=False)
    s.set_defaults(func=run_steer)

    v = sub.add_parser("steer-vector", help="build a steering vector from contrast pairs or CAA items",
                       description="Mean difference (CAA) or PCA of residual-stream differences between "
                       "positive and negative texts, saved as a direction folder.")
    add_model_args(v)
    source = v.add_mutually_exclusive_group(required=True)
    source.add_argument("--behavior", choices=CAA_BEHAVIORS, help="a bundled CAA behaviour's A/B items")
    source.add_argument("--pairs", help="a JSONL file of {\"positive\": ..., \"negative\": ...} pairs")
    v.add_argument("--layer", type=int, required=True, help="layer whose resid_post the vector lives in")
    v.add_argument("--method", choices=["mean_diff", "pca"], default="mean_diff", help="(default: mean_diff)")
    v.add_argument("--n-items", type=int, default=100, help="CAA items to use (default: 100)")
    add_out_args(v, "steer_vector", progress=False, what="direction folder")
    v.set_defaults(func=run_vector)

    e = sub.add_parser("steer-effect", help="measure a steering vector's effect on held-out CAA A/B items",
                       description="Build a CAA vector on some items (or take --vector) and measure P(behaviour-"
                       "matching answer) on other items across coefficients, with 95% CIs and a plot.")
    add_model_args(e)
    add_arguments(e, EffectConfig)
    e.add_argument("--vector", help="measure this saved direction instead of building one")
    add_out_args(e, "steer_effect")
    e.set_defaults(func=run_effect)


def run_steer(args: argparse.Namespace) -> int:
    from ..cli import model_from_args
    from ..directions import Direction
    from .apply import COEF_UNIT, compare, side_by_side, typical_norm

    direction = Direction.load(args.vector)
    lm = model_from_args(args)
    sites = [lm.site(f"resid_post.{layer}").name for layer in args.layer] if args.layer else None
    rows = compare(lm, direction, args.coef, args.prompt, sites, args.max_new_tokens)
    print(side_by_side(rows, args.coef))
    out = Path(args.out) if args.out else default_run_dir("steer")
    write_config(out, "steer", model=lm.provenance(), vector=str(args.vector), sites=sites or [direction.site],
                 coef=args.coef, coef_unit=COEF_UNIT, max_new_tokens=args.max_new_tokens)
    norms = {s: typical_norm(lm, s) for s in sites or [direction.site]}  # cached: measured by compare already
    write_results(out, {"generations": [r._asdict() for r in rows], "typical_norm": norms,
                        "added_norm": {s: abs(args.coef) * n for s, n in norms.items()}})
    return 0


def run_vector(args: argparse.Namespace) -> int:
    from ..cli import model_from_args
    from .effect import caa_items
    from .vectors import caa_pairs, contrast_vector

    lm = model_from_args(args)
    if args.behavior:
        pairs = caa_pairs(lm, caa_items(args.behavior)[: args.n_items])
        source = f"caa/{args.behavior}"
    else:
        pairs, source = read_pairs(args.pairs), str(args.pairs)
    direction = contrast_vector(lm, pairs, args.layer, args.method)
    direction.metadata["source"] = source
    out = Path(args.out) if args.out else default_run_dir("steer_vector")
    direction.save(out)
    print(f"{args.method} vector from {len(pairs)} pairs at {direction.site}, norm "
          f"{direction.metadata['norm']:.2f} -> {out}")
    return 0


def read_pairs(path: str | Path):
    from ..data.files import jsonl_objects
    from .vectors import ContrastPair

    pairs = []
    for n, row in jsonl_objects(path, "a JSON object with 'positive' and 'negative' texts"):
        if not isinstance(row.get("positive"), str) or not isinstance(row.get("negative"), str):
            raise GreyglassError(f"{path} line {n}: expected a JSON object with 'positive' and 'negative' texts")
        pairs.append(ContrastPair(row["positive"], row["negative"]))
    return pairs


def run_effect(args: argparse.Namespace) -> int:
    from ..cli import model_from_args
    from ..directions import Direction
    from .effect import describe, steering_effect

    overrides = {"coefs": tuple(args.coefs)} if getattr(args, "coefs", None) else {}
    cfg = from_namespace(EffectConfig, args, **overrides)
    direction = Direction.load(args.vector) if args.vector else None
    out = Path(args.out) if args.out else default_run_dir("steer_effect")
    results = steering_effect(model_from_args(args), cfg, out, direction, progress=not args.no_progress)
    print(describe(results))
    print(f"plot: {out / results['plot']}")
    return 0
