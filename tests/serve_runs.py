"""Run folders for the browser tests: a capture, an eval with items, an SAE's features, two directions."""

import json

import torch

from greyglass.data import CorpusConfig
from greyglass.directions import Direction
from greyglass.features import FeaturesConfig, build_features
from greyglass.features.source import corpus_batches
from greyglass.runs import write_config, write_results
from greyglass.sae.config import SAEConfig
from greyglass.sae.io import save_sae
from greyglass.sae.model import SparseAutoencoder
from greyglass.store.config import CaptureResults, CaptureRunConfig

SITE = "blocks.1.hook_resid_post"  # exists in the tiny models and the real ones


def make_runs(root, lm):
    """A capture run, an eval run with items, an SAE's feature database and two saved directions."""
    cap = root / "capture" / "c1"
    write_config(cap, "capture", model=lm.provenance(), config=CaptureRunConfig())
    write_results(cap, CaptureResults(n_tokens=1234, tokens_requested=1234, sites=(SITE,), shards=1, megabytes=0.1,
                                      corpus_ran_out=False, seconds=0.5))
    ev = root / "eval" / "e1"
    write_config(ev, "eval", model=lm.provenance())
    write_results(ev, {"accuracy": 0.75, "n_items": 60})
    (ev / "items.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "question": f"Is {i} even?", "answer": "yes" if i % 2 == 0 else "no",
                                                        "correct": i % 4 != 3, "<b>": "<script>x</script>"}) + "\n" for i in range(60)))
    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(d_in=lm.d_model, d_sae=32, k=4, k_aux=16, hook_name=SITE))
    sae_dir = save_sae(sae, root / "sae" / "s1")
    feats = sae_dir / "features"
    cfg = FeaturesConfig(tokens=1500, top_k=4, n_samples=4, window=3)
    write_config(feats, "features", model=lm.provenance(), features=cfg, sae=str(sae_dir))
    batches = corpus_batches(lm, SITE, CorpusConfig(context_size=64), cfg.tokens, cfg.batch_windows)
    write_results(feats, build_features(lm, sae, batches, cfg, feats, {"sae": str(sae_dir), "model": lm.name}, progress=False))
    Direction(torch.randn(lm.d_model), SITE, "logistic", bias=0.1).save(root / "probe" / "p1" / "direction")
    Direction(torch.randn(7), SITE, "mean_diff").save(root / "probe" / "other_model")
    return root
