"""The demo's SAE step: train a small TopK SAE on the captured store, evaluate it on held-out text."""

from __future__ import annotations

import time

from ..runs import write_config, write_results
from .config import SAEConfig, TrainConfig
from .evaluate import EvalConfig, evaluate, summary
from .train import store_batches, train_saes

EXPANSION = 4
K = 32
TRAIN_TOKENS = 300_000
EVAL_TOKENS = 2048


def step_sae(ctx) -> None:
    """TopK SAE (expansion 4, k 32) on the capture step's store: a few epochs, then held-out evaluation."""
    store = ctx.outputs["store"]
    site = store.sites[0]
    out = ctx.root / "sae"
    cfg = SAEConfig(architecture="topk", d_in=store.d_model, d_sae=EXPANSION * store.d_model, k=K,
                    dead_tokens=min(store.n_tokens, TRAIN_TOKENS // 4), model_name=ctx.lm.spec, hook_name=site,
                    context_size=store.manifest["context_size"], prepend_bos=ctx.lm.prepend_bos)
    tcfg = TrainConfig(tokens=TRAIN_TOKENS, batch_size=2048, lr=1e-3, warmup_steps=10)
    provenance = {"store": str(store.folder), "model": ctx.lm.provenance()}
    write_config(out, "sae_train", train=tcfg, saes=[cfg], **provenance)
    start = time.perf_counter()
    result = train_saes([cfg], tcfg, store_batches(store, [site], tcfg.batch_size, seed=tcfg.seed), out,
                        resume=True, provenance=provenance)
    trained = time.perf_counter() - start
    sae, folder = result.saes[0], result.folders[0]
    results = evaluate(sae, ctx.lm, EvalConfig(tokens=EVAL_TOKENS))
    write_results(out, {"sae": str(folder), "train_seconds": round(trained, 1), "train_tokens": result.tokens,
                        "final": result.metrics[0], "eval": results})
    ctx.outputs["sae"] = sae
    ctx.outputs["sae_dir"] = folder
    print(f"\n[sae] TopK SAE with {cfg.d_sae:,} latents (k={K}) trained on {result.tokens:,} activations of {site} "
          f"in {trained:.0f} s -> {folder}")
    print(summary(results))
