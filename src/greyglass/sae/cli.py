"""`greyglass sae train|eval|absorption|absorption-weights|meta|freq-experiment`."""

from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..config import add_arguments, from_namespace
from ..data.corpus import CorpusConfig, corpus_fingerprint
from ..errors import GreyglassError
from ..runs import default_run_dir, write_config, write_results
from .config import SAEConfig, TrainConfig
from .evaluate import EvalConfig, evaluate, summary
from .heldout import TRAINING_TEXT, UNVERIFIED_FLAG, heldout_status, store_training_text, training_text
from .io import load_sae, read_training, saelens_encoder

# SAEConfig fields the data decides (width, site, model, windows) rather than a flag
_FROM_DATA = ("d_in", "d_sae", "k", "model_name", "hook_name", "context_size", "prepend_bos", "norm_scale")


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import add_model_args, add_out_args

    sae = sub.add_parser("sae", help="train and evaluate sparse autoencoders")
    commands = sae.add_subparsers(dest="sae_command", metavar="SAE_COMMAND", required=True)

    t = commands.add_parser("train", help="train SAEs from an activation store or on the fly",
                            description="Train one SAE per (--site, --k) pair, all from one pass over the "
                            "data: from --store, or with no store from --model over --corpus.")
    t.add_argument("--store", help="activation store folder (from `greyglass capture`)")
    add_model_args(t)
    t.add_argument("--site", dest="sites", action="append", metavar="SITE",
                   help="site to train on (repeatable; default: every site of the store)")
    t.add_argument("--k", dest="ks", type=int, action="append", metavar="K",
                   help="active latents per token for topk/batchtopk (repeatable: one SAE each; default 32)")
    t.add_argument("--expansion", type=int, default=8, help="d_sae = expansion * d_in (default: 8)")
    t.add_argument("--d-sae", dest="latents", type=int, help="number of latents (overrides --expansion)")
    add_arguments(t, SAEConfig, skip=_FROM_DATA)
    add_arguments(t, TrainConfig)
    add_arguments(t, CorpusConfig, skip=("seed", "split"))
    add_out_args(t, "sae", resume="continue from the checkpoint in --out")
    t.set_defaults(func=run_train)

    e = commands.add_parser("eval", help="evaluate an SAE on held-out text (reconstruction and downstream loss)")
    e.add_argument("sae", help="SAE folder (greyglass or SAELens)")
    add_model_args(e)
    e.add_argument("--site", help="site to splice the SAE into (default: the SAE's own)")
    e.add_argument(UNVERIFIED_FLAG, dest="unverified_text", action="store_true",
                   help="evaluate even when the text cannot be shown to share no document with the SAE's training "
                   "text (a SAELens SAE, another corpus, training on split all); the results then say so")
    add_arguments(e, EvalConfig)
    add_arguments(e, CorpusConfig, skip=("split",))
    add_out_args(e, "sae_eval")
    e.set_defaults(func=run_eval)

    from .absorption import AbsorptionConfig
    from .meta import MetaConfig

    a = commands.add_parser("absorption", help="measure feature absorption with the first-letter benchmark",
                            description="Chanin et al.'s first-letter benchmark: probes per letter on the SAE's "
                            "site, main latents by k-sparse probing, absorption rate per letter and overall.")
    a.add_argument("sae", help="SAE folder (greyglass or SAELens)")
    add_model_args(a)
    a.add_argument("--site", help="site the SAE reads (default: the SAE's own)")
    add_arguments(a, AbsorptionConfig)
    add_out_args(a, "sae_absorption")
    a.set_defaults(func=run_absorption)

    w = commands.add_parser("absorption-weights", help="find absorbing (parent, child) latent pairs from the weights alone",
                            description="Score every (parent, child) pair from W_enc and W_dec (and the saved "
                            "firing rates), in blocks; optionally validate against a first-letter run.")
    w.add_argument("sae", help="SAE folder (greyglass or SAELens)")
    w.add_argument("--top", type=int, default=1000, help="pairs to keep (default: 1000)")
    w.add_argument("--block", type=int, default=1024, help="parents scored at once (default: 1024)")
    w.add_argument("--no-rates", action="store_true", help="ignore the saved firing rates")
    w.add_argument("--ground-truth", help="a `greyglass sae absorption` run folder to validate against")
    add_out_args(w, "sae_absorption_weights", progress=False)
    w.set_defaults(func=run_absorption_weights)

    m = commands.add_parser("meta", help="train a meta-SAE on an SAE's decoder rows",
                            description="A BatchTopK SAE on the decoder rows: variance explained, members of "
                            "each meta-latent with logit-lens tokens, latents that compose several meta-latents.")
    m.add_argument("sae", help="SAE folder (greyglass or SAELens)")
    add_model_args(m)
    m.add_argument("--no-lens", action="store_true", help="skip the logit lens (no model is loaded)")
    add_arguments(m, MetaConfig)
    add_out_args(m, "sae_meta")
    m.set_defaults(func=run_meta)

    from .freq_experiment import FreqExperimentConfig

    f = commands.add_parser("freq-experiment", help="TopK and JumpReLU with and without frequency-aware sparsity",
                            description="Train TopK, JumpReLU and their frequency-aware versions at matched L0 in "
                            "one pass over the data; tabulate explained variance, CE loss recovered, dead and "
                            "dense latents and first-letter absorption.")
    add_model_args(f)
    add_arguments(f, FreqExperimentConfig)
    add_arguments(f, TrainConfig)
    add_arguments(f, CorpusConfig, skip=("seed", "split"))
    add_arguments(f, AbsorptionConfig, skip=("batch_size", "seed"))
    add_out_args(f, "sae_freq_experiment", resume="continue the training from the checkpoint in --out")
    f.set_defaults(func=run_freq_experiment)


def sae_configs(base: SAEConfig, sites: list[str], ks: list[int], d_in: int, d_sae: int, **meta: Any) -> list[SAEConfig]:
    """One config per (site, k): the cross product the user asked for."""
    return [base.with_updates(hook_name=s, d_in=d_in, d_sae=d_sae, **meta).with_k(k) for s, k in itertools.product(sites, ks)]


def run_train(args: argparse.Namespace) -> int:
    from ..cli import model_from_args
    from ..store.reader import ActivationStore
    from .train import buffered_batches, store_batches, train_saes

    tcfg = from_namespace(TrainConfig, args)
    base = from_namespace(SAEConfig, args)
    out = Path(args.out) if args.out else default_run_dir("sae")
    ks = args.ks or [32]
    parts: dict[str, Any] = {}
    if args.store:
        store = ActivationStore(args.store)
        sites = [store.site(s) for s in args.sites] if args.sites else store.sites
        d_in, m = store.d_model, store.manifest
        meta = {"model_name": m["model"]["spec"], "context_size": m["context_size"],
                "prepend_bos": m["corpus"].get("prepend_bos") is not False}
        batches = store_batches(store, sites, tcfg.batch_size, seed=tcfg.seed)
        parts = {"store": str(store.folder), "model": m["model"], "corpus_fingerprint": m["corpus"]["fingerprint"],
                 TRAINING_TEXT: store_training_text(m)}
    else:
        if not args.sites:
            raise GreyglassError("give --store, or --site (with --model and --corpus) to train on the fly")
        lm = model_from_args(args)
        corpus = from_namespace(CorpusConfig, args, split="train", seed=tcfg.seed)
        sites = [lm.site(s).name for s in args.sites]
        d_in = lm.d_model
        meta = {"model_name": lm.spec, "context_size": corpus.context_size,
                "prepend_bos": lm.prepend_bos if corpus.prepend_bos is None else corpus.prepend_bos}
        batches = buffered_batches(lm, sites, corpus, tcfg.batch_size, tcfg.buffer_tokens, seed=tcfg.seed)
        parts = {"model": lm.provenance(), "corpus": corpus, "corpus_fingerprint": corpus_fingerprint(corpus),
                 TRAINING_TEXT: training_text(corpus)}
    cfgs = sae_configs(base, sites, ks, d_in, args.latents or args.expansion * d_in, **meta)
    write_config(out, "sae_train", train=tcfg, saes=[asdict(c) for c in cfgs], **parts)
    result = train_saes(cfgs, tcfg, batches, out, resume=args.resume, progress=not args.no_progress,
                        provenance=parts, device=args.device)
    write_results(out, {"saes": [str(f) for f in result.folders], "final": result.metrics, "tokens": result.tokens,
                        "seconds": round(result.seconds, 2),
                        "tokens_per_second": round(result.tokens / max(result.seconds, 1e-9), 1)})
    for folder, m in zip(result.folders, result.metrics):
        print(f"{folder}: fraction of variance unexplained {m['fvu']:.3f}, L0 {m['l0']:.1f}, dead {m['dead']:.1%}")
    return 0


def model_for(sae, args: argparse.Namespace):
    """The SAE knows its model; the default --model gives way to it."""
    from ..models.loader import DEFAULT_MODEL, load_model

    spec = sae.cfg.model_name if args.model == DEFAULT_MODEL and sae.cfg.model_name else args.model
    return load_model(spec, dtype=args.dtype, device=args.device)


def run_eval(args: argparse.Namespace) -> int:
    sae = load_sae(args.sae)
    lm = model_for(sae, args)
    ecfg = from_namespace(EvalConfig, args)
    corpus = from_namespace(CorpusConfig, args, split="heldout",
                            **({} if "context_size" in vars(args) else {"context_size": sae.cfg.context_size}))
    trained_on = read_training(args.sae).get("provenance", {}).get(TRAINING_TEXT)
    heldout = heldout_status(trained_on, corpus, args.sae, allow_unverified=args.unverified_text)
    out = Path(args.out) if args.out else default_run_dir("sae_eval")
    write_config(out, "sae_eval", sae=str(args.sae), site=sae.cfg.hook_name, d_sae=sae.cfg.d_sae,
                 model=lm.provenance(), eval=ecfg, corpus=corpus,
                 corpus_fingerprint=corpus_fingerprint(corpus), heldout=heldout)
    start = time.perf_counter()
    results = evaluate(sae, lm, ecfg, corpus, site=args.site, progress=not args.no_progress, heldout=heldout)
    plain = saelens_encoder(sae)
    if plain is not None:  # SAELens computes another encoder from this folder: report it too
        results["saelens_reads"] = evaluate(plain, lm, ecfg, corpus, site=args.site, progress=not args.no_progress,
                                            heldout=heldout)
    write_results(out, {**results, "seconds": round(time.perf_counter() - start, 2)})
    print(summary(results))
    if plain is not None:
        print(f"as SAELens reads this folder (a plain TopK, no frequency cost):\n{summary(results['saelens_reads'])}")
    print(f"results: {out / 'results.json'}")
    return 0


def run_absorption(args: argparse.Namespace) -> int:
    from .absorption import AbsorptionConfig, first_letter_absorption, summary as absorption_summary

    sae = load_sae(args.sae)
    lm = model_for(sae, args)
    acfg = from_namespace(AbsorptionConfig, args)
    out = Path(args.out) if args.out else default_run_dir("sae_absorption")
    write_config(out, "sae_absorption", sae=str(args.sae), model=lm.provenance(), absorption=acfg,
                 seed=acfg.seed)
    results = first_letter_absorption(sae, lm, acfg, site=args.site, progress=not args.no_progress)
    write_results(out, results)
    print(absorption_summary(results))
    print(f"results: {out / 'results.json'}")
    return 0


def run_absorption_weights(args: argparse.Namespace) -> int:
    import json

    from .absorption import absorbing_pairs
    from .absorption_weights import detect_absorption, pairs_summary, validate
    from .io import load_sparsity

    sae = load_sae(args.sae)
    rates = None if args.no_rates else load_sparsity(args.sae)
    truth = None
    if args.ground_truth:
        path = Path(args.ground_truth) / "results.json"
        if not path.is_file():
            raise GreyglassError(f"{path} is missing; --ground-truth takes a `greyglass sae absorption` run folder")
        truth = json.loads(path.read_text())
    out = Path(args.out) if args.out else default_run_dir("sae_absorption_weights")
    write_config(out, "sae_absorption_weights", sae=str(args.sae), top=args.top, block=args.block,
                 rates=rates is not None, ground_truth=args.ground_truth)
    start = time.perf_counter()
    pairs = detect_absorption(sae, top=args.top, block=args.block, log10_rates=rates, progress=True)
    results: dict[str, Any] = {"pairs": pairs_summary(pairs, len(pairs.scores)), "used_rates": rates is not None,
                               "seconds": round(time.perf_counter() - start, 2)}
    if truth is not None:
        parents = sorted({m for r in truth["letters"].values() for m in r["main_latents"]})
        results["validation"] = validate(sae, pairs, absorbing_pairs(truth), parents)
    write_results(out, results)
    print(f"{len(pairs.scores)} candidate absorbing pairs (parent -> child); strongest:")
    for p in results["pairs"][:5]:
        print(f"  {p['parent']} -> {p['child']}: score {p['score']:.4f} (decoder cosine {p['decoder_cos']:.2f}, "
              f"encoder gap {p['encoder_gap']:.2f})")
    if "validation" in results:
        v = results["validation"]
        print(f"against {v['truth_pairs']} measured first-letter pairs: precision {v['precision']:.1%}, "
              f"recall {v['recall']:.1%}, AUROC {v['auroc']:.3f} (95% CI {v['auroc_ci'][0]:.3f}-{v['auroc_ci'][1]:.3f}) "
              f"over {v['candidate_pairs']} (main latent, latent) pairs; decoder cosine alone: AUROC "
              f"{v['auroc_decoder_cos_only']:.3f}" if v["auroc_ci"] else "no measured pairs to validate against")
    print(f"results: {out / 'results.json'}")
    return 0


def run_meta(args: argparse.Namespace) -> int:
    from .meta import MetaConfig, meta_report, summary as meta_summary, train_meta_sae

    sae = load_sae(args.sae)
    mcfg = from_namespace(MetaConfig, args)
    lm = None if args.no_lens else model_for(sae, args)
    out = Path(args.out) if args.out else default_run_dir("sae_meta")
    write_config(out, "sae_meta", sae=str(args.sae), meta=mcfg, seed=mcfg.seed,
                 model=lm.provenance() if lm is not None else None)
    meta = train_meta_sae(sae, mcfg, out, progress=not args.no_progress)
    results = meta_report(meta, sae, mcfg, lm)
    write_results(out, {**results, "meta_sae": str(out / "sae")})
    print(meta_summary(results))
    print(f"results: {out / 'results.json'}")
    return 0


def run_freq_experiment(args: argparse.Namespace) -> int:
    from ..cli import model_from_args
    from .absorption import AbsorptionConfig
    from ..plots import save_svg
    from .freq_experiment import FreqExperimentConfig, figures, run_experiment

    cfg = from_namespace(FreqExperimentConfig, args)
    tcfg = from_namespace(TrainConfig, args)
    acfg = from_namespace(AbsorptionConfig, args, batch_size=64, seed=tcfg.seed)
    lm = model_from_args(args)
    corpus = from_namespace(CorpusConfig, args, split="train", seed=tcfg.seed)
    out = Path(args.out) if args.out else default_run_dir("sae_freq_experiment")
    write_config(out, "sae_freq_experiment", experiment=cfg, train=tcfg, corpus=corpus, absorption=acfg,
                 model=lm.provenance(), corpus_fingerprint=corpus_fingerprint(corpus), seed=tcfg.seed)
    results = run_experiment(lm, cfg, tcfg, corpus, acfg, out, progress=not args.no_progress, resume=args.resume)
    for name, svg in figures(results["rows"]).items():
        save_svg(out / name, svg)
    write_results(out, results)
    print(results["markdown"])
    print(f"results: {out / 'results.json'}")
    return 0
