"""Run folders for the browser tests: a capture, an eval with items, an SAE's features, two directions."""

import json

import torch

from greyglass.data import CorpusConfig
from greyglass.directions import Direction
from greyglass.latents.build import build_features
from greyglass.latents.config import BuildConfig, FeaturesConfig
from greyglass.activations import model_windows, take_tokens
from greyglass.runs import write_config, write_results
from greyglass.sae.architectures import create_sae
from greyglass.sae.config import SAEConfig, TopKConfig
from greyglass.sae.io import save_sae
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
    sae = create_sae(SAEConfig(d_in=lm.d_model, d_sae=32, arch=TopKConfig(k=4, k_aux=16), hook_name=SITE))
    sae_dir = save_sae(sae, root / "sae" / "s1")
    feats = sae_dir / "features"
    cfg = FeaturesConfig(tokens=1500, top_k=4, n_samples=4, window=3)
    write_config(feats, "features", model=lm.provenance(), config=BuildConfig(sae=str(sae_dir), features=cfg))
    batches = take_tokens(model_windows(lm, [SITE], CorpusConfig(context_size=64), cfg.batch_windows), cfg.tokens)
    write_results(feats, build_features(lm, sae, batches, cfg, feats, {"sae": str(sae_dir), "model": lm.name}, progress=False))
    Direction(torch.randn(lm.d_model), SITE, "logistic", bias=0.1).save(root / "probe" / "p1" / "direction")
    Direction(torch.randn(7), SITE, "mean_diff").save(root / "probe" / "other_model")
    return root


def make_figure_runs(root):
    """Run folders whose report sections draw every chart kind pages show, from real runs on tiny
    random models (the figures are the point, not the numbers): the SAE firing-rate bars, the
    sycophancy agreement bars, the probe sweep's lines, the organism probe's lines and histograms.
    Returns the run ids (paths under `root`) that carry a figure."""
    from greyglass.cli import main
    from greyglass.behaviour.local import LocalBackend
    from greyglass.behaviour.config import EvalConfig as BehaviourEvalConfig
    from greyglass.behaviour.run import run_eval
    from greyglass.models.tiny import tiny_model
    from greyglass.probes.config import SweepConfig
    from greyglass.probes.sweep import sweep
    from greyglass.sae.config import MetricsConfig, MetricsRunConfig
    from greyglass.sae.metrics import evaluate
    from greyglass.sae.results import MetricsResults

    lm, chat = tiny_model("llama"), tiny_model("llama", chat=True, seed=2)
    torch.manual_seed(0)
    sae = create_sae(SAEConfig(arch=TopKConfig(k=8), d_in=lm.d_model, d_sae=256, hook_name=SITE, context_size=16))
    write_config(root / "sae_eval", "sae_eval", config=MetricsRunConfig(sae="a random SAE"), model=lm.provenance())
    write_results(root / "sae_eval", MetricsResults(evaluate(sae, lm, MetricsConfig(tokens=200), progress=False), None, 0.0))
    run_eval(LocalBackend(chat), BehaviourEvalConfig(eval="sycophancy", limit=8, batch_size=4), root / "sycophancy",
             progress=False)
    sweep(lm, SweepConfig(data="cities", n_statements=40, layer_step=2, n_bootstrap=50), root / "probe_sweep",
          progress=False)
    chat.model.save_pretrained(root / "tiny-chat")
    chat.tokenizer.save_pretrained(root / "tiny-chat")
    assert main(["organism", "train", "--model", str(root / "tiny-chat"), "--n-train", "4", "--n-test", "4",
                 "--steps", "2", "--answer-tokens", "4", "--out", str(root / "organism"), "--no-progress"]) == 0
    assert main(["organism", "probe", str(root / "organism"), "--n-boot", "20", "--out", str(root / "organism_probe")]) == 0
    return ["sae_eval", "sycophancy", "probe_sweep", "organism_probe"]


def write_old_sweep(folder, command=("/usr/local/bin/greyglass", "probe", "sweep", "--data", "cities")):
    """A probe sweep's folder as greyglass wrote it before typed results (layout 1, the shape of
    `probes/sweep.py` at commit 34bfd9e): its settings under `sweep`, not `config`, and results.json in
    the command's own shape."""
    folder.mkdir(parents=True)
    config = {"kind": "probe_sweep", "command": list(command) if command else None, "created": "2026-11-30T10:00:00+00:00",
              "versions": {"greyglass": "0.1.0", "python": "3.12.3", "torch": "2.9.0", "transformers": "5.20.0"},
              "model": {"name": "SmolLM2-135M", "spec": "smollm2-135m", "sha256": "ab" * 32},
              "sweep": {"data": "cities", "kind": "logistic", "n_statements": 400, "layer_step": 2, "seed": 0},
              "layers": [0, 2], "data_fingerprint": "cd" * 32}
    row = {"layer": 2, "site": "blocks.2.hook_resid_post", "validation_accuracy": 0.9, "train_accuracy": 0.95,
           "accuracy": {"value": 0.88, "ci_low": 0.8, "ci_high": 0.93}}
    results = {"data": "cities", "kind": "logistic", "n_statements": 400, "n_train": 320, "n_test": 80,
               "true_fraction": 0.5, "layers": [row], "best_layer": 2, "best_site": row["site"],
               "best_depth_fraction": 0.07, "best_probe": f"probes/{row['site']}", "plot": "accuracy_by_layer.svg"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "results.json").write_text(json.dumps(results))
    return folder
