"""The demo's feature step: statistics for the SAE the demo trained, and the bridge concept across languages."""

from __future__ import annotations

from pathlib import Path

from ..runs import write_config, write_results
from ..store.manifest import MANIFEST
from ..store.reader import ActivationStore
from .build import FeaturesConfig, build_features
from .concept import builtin_concepts, concept_table
from .db import FeatureDB
from .source import corpus_batches, store_batches

DEMO_TOKENS = 10_000


def step_features(ctx) -> None:
    """Build feature statistics on a slice of the corpus; print the most language-independent bridge latents."""
    sae, sae_dir = ctx.outputs.get("sae"), ctx.outputs.get("sae_dir")
    if sae is None or sae_dir is None:
        print("\n[features] skipped: no SAE was trained in this demo (the SAE step did not run)")
        return
    lm, out = ctx.lm, Path(ctx.root) / "features"
    cfg = FeaturesConfig(tokens=min(DEMO_TOKENS, ctx.tokens))
    store = ActivationStore(ctx.root / "capture") if (ctx.root / "capture" / MANIFEST).exists() else None
    if store is not None and sae.cfg.hook_name in store.sites:
        batches, data = store_batches(store, sae.cfg.hook_name, cfg.tokens, cfg.batch_windows), {"store": str(store.folder)}
    else:
        from ..data.corpus import CorpusConfig

        batches, data = corpus_batches(lm, sae.cfg.hook_name, CorpusConfig(split="train"), cfg.tokens), {"corpus": "bundled"}
    write_config(out, "features", model=lm.provenance(), features=cfg, data=data, sae=str(sae_dir))
    summary = build_features(lm, sae, batches, cfg, out, {"sae": str(sae_dir), "model": lm.name})
    concept = concept_table(lm, sae, builtin_concepts()["bridge"], ntrex=10, top=5)
    write_results(out, {**summary, "bridge_concept": concept})
    ctx.outputs["features_dir"] = out
    labels = {r["latent"]: r["label"] for r in FeatureDB(out).summaries()}
    print(f"\n[features] {summary['n_tokens']:,} tokens through {summary['d_sae']:,} latents; "
          f"{summary['dead_latents']:,} never fired -> {out}")
    print(f"[features] latents that fire on the Golden Gate Bridge in the most languages "
          f"(of {len(concept['languages'])}, above every control sentence):")
    for r in concept["ranked"]:
        print(f"  latent {r['latent']:>5}: {r['languages']} languages ({', '.join(r['carries']) or 'none'}); "
              f"label: {labels[r['latent']]}")
    print(f"  see one: greyglass features show {out} {concept['ranked'][0]['latent']}")
