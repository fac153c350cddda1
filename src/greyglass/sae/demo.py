"""The demo's SAE step: train a small TopK SAE on the captured store, evaluate it on held-out text."""

from __future__ import annotations

import time

from ..runs import write_config, write_results
from ..store.reader import ActivationStore
from .config import SAEConfig, TopKConfig, TrainConfig
from ..data.corpus import CorpusConfig
from .evaluate import EvalConfig, evaluate, summary
from .heldout import TRAINING_TEXT, heldout_status, store_training_text
from .train import store_batches, train_saes

EXPANSION = 4
K = 32
TRAIN_TOKENS = 300_000
EVAL_TOKENS = 2048


def step_sae(ctx) -> None:
    """TopK SAE (expansion 4, k 32) on the capture step's store: a few epochs, then held-out evaluation."""
    store = ActivationStore(ctx.root / "capture")
    site = store.sites[0]
    out = ctx.root / "sae"
    cfg = SAEConfig(arch=TopKConfig(k=K), d_in=store.d_model, d_sae=EXPANSION * store.d_model,
                    model_name=ctx.lm.spec, hook_name=site,
                    context_size=store.manifest["context_size"], prepend_bos=ctx.lm.prepend_bos)
    tcfg = TrainConfig(tokens=TRAIN_TOKENS, batch_size=2048, lr=1e-3, warmup_steps=10)
    provenance = {"store": str(store.folder), "model": ctx.lm.provenance(),
                  TRAINING_TEXT: store_training_text(store.manifest)}
    write_config(out, "sae_train", train=tcfg, saes=[cfg], **provenance)
    start = time.perf_counter()
    result = train_saes([cfg], tcfg, store_batches(store, [site], tcfg.batch_size, seed=tcfg.seed), out,
                        resume=True, provenance=provenance)
    trained = time.perf_counter() - start
    sae, folder = result.saes[0], result.folders[0]
    corpus = CorpusConfig(split="heldout", context_size=cfg.context_size)
    results = evaluate(sae, ctx.lm, EvalConfig(tokens=EVAL_TOKENS), corpus,
                       heldout=heldout_status(provenance[TRAINING_TEXT], corpus, folder))
    write_results(out, {"sae": str(folder), "train_seconds": round(trained, 1), "train_tokens": result.tokens,
                        "final": result.metrics[0], "eval": results})
    ctx.outputs["sae"] = sae
    ctx.outputs["sae_dir"] = folder
    print(f"\n[sae] TopK SAE with {cfg.d_sae:,} latents (k={K}) trained on {result.tokens:,} activations of {site} "
          f"in {trained:.0f} s -> {folder}")
    print(summary(results))


def step_absorption(ctx) -> None:
    """Feature absorption on the SAE step's SAE: a small first-letter run, the weights-only
    detector validated on it, and a meta-SAE on its decoder rows (about a minute)."""
    from .absorption import AbsorptionConfig, absorbing_pairs, first_letter_absorption
    from .absorption import summary as absorption_summary
    from .absorption_weights import detect_absorption, validate
    from .io import load_sparsity
    from .meta import MetaConfig, meta_report, train_meta_sae
    from .meta import summary as meta_summary

    sae, folder = ctx.outputs.get("sae"), ctx.outputs.get("sae_dir")
    if sae is None:
        print("\n[absorption] skipped: no SAE from the SAE step")
        return
    out = ctx.root / "absorption"
    acfg = AbsorptionConfig(words=400, min_words_per_letter=8)
    write_config(out, "sae_absorption", sae=str(folder), model=ctx.lm.provenance(), absorption=acfg, seed=acfg.seed)
    results = first_letter_absorption(sae, ctx.lm, acfg)
    pairs = detect_absorption(sae, top=1000, log10_rates=load_sparsity(folder))
    parents = sorted({m for r in results["letters"].values() for m in r["main_latents"]})
    results["detector_validation"] = validate(sae, pairs, absorbing_pairs(results), parents)
    write_results(out, results)
    print("\n[absorption] " + absorption_summary(results))
    v = results["detector_validation"]
    if v["truth_pairs"]:
        print(f"weights-only detector against the {v['truth_pairs']} measured pairs: AUROC {v['auroc']:.3f} "
              f"(decoder cosine alone {v['auroc_decoder_cos_only']:.3f})")
    mcfg = MetaConfig(k=2, steps=300)
    meta_out = ctx.root / "meta"
    write_config(meta_out, "sae_meta", sae=str(folder), meta=mcfg, seed=mcfg.seed, model=ctx.lm.provenance())
    report = meta_report(train_meta_sae(sae, mcfg, meta_out), sae, mcfg, ctx.lm)
    write_results(meta_out, report)
    print(meta_summary(report))
