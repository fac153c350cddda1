"""`make saebench-check`, part 2: a greyglass SAE folder evaluated by SAEBench 0.6.0's core and sparse-probing evals.

Runs in the sae-bench 0.6.0 environment (`.venv-saebench`). The SAE folder is loaded unchanged by SAELens
(`SAE.load_from_disk`: greyglass writes SAELens's layout), its decoder norms folded into the activations
where SAELens allows it (`fold_W_dec_norm`, what SAEBench's loader tries on every SAELens SAE it loads by name;
SAELens refuses for TopK, and SAEBench then goes on unfolded, as here) and handed to SAEBench
(`general_utils.load_and_format_sae`). Then, on a small CPU budget:

- core: SAEBench's `evals.core.main.run_evals` (explained variance, CE loss score, KL score, L0, feature
  density) on the held-out split of the text greyglass trains on (the bundled Wikipedia sample, every 20th
  document, greyglass's `--split heldout`), fed to SAELens's `ActivationsStore` as a local `datasets.Dataset`
  (SAEBench's default is openwebtext from the hub, which is not reachable here);
- sparse probing: SAEBench's `evals.sparse_probing.main.run_eval_single_dataset` (mean-pooled activations,
  top-k latents by class mean difference, logistic regression; test accuracy for the model's activations
  and for the SAE's top 1, 2, 5 latents) on a language-identification task built from the local NTREX-128
  sentences (en, fr, de, es, it). SAEBench's own eight datasets (bias-in-bios, amazon reviews, github-code,
  ag_news, europarl) are hub datasets and none is available here; NTREX is the closest to europarl's
  language task (Italian stands in for Dutch, which NTREX lacks);
- beside them, greyglass's own `sae eval` figures (`greyglass.sae.metrics.evaluate`) on the same held-out text.

The model is the HookedTransformer `bench/saebench_check.py` builds from the local weights, checked against
greyglass's forward pass. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

from greyglass.data.corpus import CorpusConfig, documents
from greyglass.models.loader import load_model
from greyglass.sae.config import MetricsConfig

NTREX = Path("/work/shared/data/ntrex-128")
LANGUAGES = {"en": "newstest2019-src.eng.txt", "fr": "newstest2019-ref.fra.txt", "de": "newstest2019-ref.deu.txt",
             "es": "newstest2019-ref.spa.txt", "it": "newstest2019-ref.ita.txt"}
TASK = "ntrex-128/language"


def heldout_dataset(windows: int, context_size: int):
    """The held-out documents (every 20th) of the bundled corpus as a `datasets.Dataset`, enough for `windows` windows."""
    from datasets import Dataset

    texts, chars = [], 0
    for _, text in documents(CorpusConfig(split="heldout")):
        texts.append(text)
        chars += len(text)
        if chars > windows * context_size * 8:  # ~4 characters a token, twice over
            break
    return Dataset.from_dict({"text": texts})


def ntrex_languages(train_size: int, test_size: int, seed: int) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """SAEBench's europarl split (per language train_size // 2 and test_size // 2 sentences) from NTREX-128: one
    shuffled set of sentence indices for every language, so no sentence is in train in one language and test in another."""
    lines = {lang: (NTREX / name).read_text(encoding="utf-8").splitlines() for lang, name in LANGUAGES.items()}
    order = list(range(min(len(v) for v in lines.values())))
    random.Random(seed).shuffle(order)
    train, test = order[:train_size // 2], order[train_size // 2:train_size // 2 + test_size // 2]
    return ({lang: [v[i] for i in train] for lang, v in lines.items()},
            {lang: [v[i] for i in test] for lang, v in lines.items()})


def core_eval(model, sae, dataset, batches: int, prompts: int, context_size: int) -> dict:
    """SAEBench's core metrics for `sae` on `dataset` (`batches` batches of `prompts` windows)."""
    from sae_bench.evals.core.eval_config import CoreEvalConfig
    from sae_bench.evals.core.main import calculate_misc_metrics, run_evals
    from sae_lens import ActivationsStore

    store = ActivationsStore.from_sae(model, sae, dataset=dataset, context_size=context_size, streaming=False,
                                      store_batch_size_prompts=prompts)
    cfg = CoreEvalConfig(model_name=sae.cfg.metadata.model_name, batch_size_prompts=prompts,
                         n_eval_reconstruction_batches=batches, n_eval_sparsity_variance_batches=batches,
                         context_size=context_size, compute_kl=True, compute_ce_loss=True, compute_l2_norms=True,
                         compute_sparsity_metrics=True, compute_variance_metrics=True,
                         compute_featurewise_density_statistics=True, compute_featurewise_weight_based_metrics=True)
    tok = model.tokenizer
    metrics, features = run_evals(sae, store, model, cfg,
                                  ignore_tokens={tok.pad_token_id, tok.eos_token_id, tok.bos_token_id})
    return {**metrics, "misc": calculate_misc_metrics(features)}


def sparse_probing(model, sae, train_size: int, test_size: int, context_size: int, llm_batch_size: int) -> dict:
    """SAEBench's sparse probing on the NTREX language task."""
    import sae_bench.evals.sparse_probing.main as sp
    import sae_bench.sae_bench_utils.dataset_info as dataset_info
    import sae_bench.sae_bench_utils.dataset_utils as dataset_utils
    from sae_bench.evals.sparse_probing.eval_config import SparseProbingEvalConfig

    dataset_info.chosen_classes_per_dataset[TASK] = list(LANGUAGES)
    original = dataset_utils.get_multi_label_train_test_data

    def local(name, train, test, seed):
        return ntrex_languages(train, test, seed) if name == TASK else original(name, train, test, seed)

    dataset_utils.get_multi_label_train_test_data = local
    cfg = SparseProbingEvalConfig(model_name=sae.cfg.metadata.model_name, dataset_names=[TASK],
                                  probe_train_set_size=train_size, probe_test_set_size=test_size,
                                  context_length=context_size, llm_batch_size=llm_batch_size, llm_dtype="float32",
                                  k_values=[1, 2, 5])
    random.seed(cfg.random_seed)
    torch.manual_seed(cfg.random_seed)
    with tempfile.TemporaryDirectory() as tmp:
        results, per_class = sp.run_eval_single_dataset(TASK, cfg, sae, model, sae.cfg.hook_layer, sae.cfg.metadata.hook_name,
                                                        "cpu", tmp, save_activations=False)
    return {"task": TASK, "train_size": train_size, "test_size": test_size, "mean": results, "per_class": per_class}


def greyglass_eval(folder: str, lm, tokens: int) -> dict:
    """greyglass's `sae eval` figures on the held-out split."""
    from greyglass.sae.io import load_sae
    from greyglass.sae.metrics import evaluate

    m = evaluate(load_sae(folder), lm, MetricsConfig(tokens=tokens), progress=False)
    return {"tokens": m.n_tokens, "explained_variance": m.explained_variance, "ce_clean": m.ce_clean,
            "ce_sae": m.ce_sae, "ce_zero": m.ce_zero, "ce_loss_recovered": m.ce_loss_recovered, "kl_sae": m.kl_sae,
            "l0": m.l0, "dead_fraction": m.dead_fraction}


def side_by_side(ours: dict, core: dict) -> dict:
    """The figures both sides compute, one row each."""
    perf, recon, sparsity = core["model_performance_preservation"], core["reconstruction_quality"], core["sparsity"]
    return {"explained_variance": [ours["explained_variance"], recon["explained_variance"]],
            "ce_clean": [ours["ce_clean"], perf["ce_loss_without_sae"]],
            "ce_sae": [ours["ce_sae"], perf["ce_loss_with_sae"]],
            "ce_zero_ablation": [ours["ce_zero"], perf["ce_loss_with_ablation"]],
            "ce_loss_recovered": [ours["ce_loss_recovered"], perf["ce_loss_score"]],
            "kl_sae": [ours["kl_sae"], core["model_behavior_preservation"]["kl_div_with_sae"]],
            "l0": [ours["l0"], sparsity["l0"]],
            "dead_fraction": [ours["dead_fraction"], 1 - core["misc"]["frac_alive"]]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sae", default="runs/demo/sae/sae", help="a greyglass SAE folder (default: the demo's)")
    p.add_argument("--batches", type=int, default=2, help="core eval: batches of --prompts windows")
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--context-size", type=int, default=128)
    p.add_argument("--probe-train", type=int, default=100, help="sparse probing: SAEBench's probe_train_set_size (half of it per class)")
    p.add_argument("--probe-test", type=int, default=100, help="equal to --probe-train: sae-bench 0.6.0's type checks reject unequal sizes")
    p.add_argument("--out", default="runs/saebench_check")
    args = p.parse_args()
    # sae-bench 0.6.0's run-time shape checks (jaxtyping) reject its own sparse probing's nested call on a small
    # task: the per-class training activations fix `train_dataset_size` at train_size / 2, then the binary
    # training set (train_size rows) fails it. The checks only annotate; turning them off changes no number.
    os.environ.setdefault("JAXTYPING_DISABLE", "1")
    try:
        import sae_bench  # noqa: F401
    except ImportError:
        print(json.dumps({"skipped": "sae_bench is not importable here; `make saebench-check` runs this in .venv-saebench"}))
        return 0
    if not Path(args.sae).is_dir():
        print(json.dumps({"skipped": f"no SAE folder at {args.sae}; run `greyglass demo` or pass --sae"}))
        return 0
    sys.path.insert(0, str(Path(__file__).parent))
    from saebench_check import check_same_model, hooked_transformer
    from sae_bench.sae_bench_utils.general_utils import load_and_format_sae
    from sae_lens import SAE

    torch.manual_seed(0)
    start = time.time()
    lm = load_model()
    sae = SAE.load_from_disk(args.sae, device="cpu")
    try:  # what SAEBench's loader does to every SAELens SAE it loads by name, and as it does, go on without
        sae.fold_W_dec_norm()
        folded = True
    except NotImplementedError:  # SAELens refuses for TopK (folding could change which latents are the top k)
        folded = False
    _, sae, _ = load_and_format_sae("greyglass", sae, "cpu")
    model = hooked_transformer(lm, layer=None)
    same = check_same_model(lm, model, sae.cfg.metadata.hook_name)
    dataset = heldout_dataset(args.batches * args.prompts, args.context_size)
    core = core_eval(model, sae, dataset, args.batches, args.prompts, args.context_size)
    probing = sparse_probing(model, sae, args.probe_train, args.probe_test, args.context_size, args.prompts)
    ours = greyglass_eval(args.sae, lm, args.batches * args.prompts * (args.context_size - 1))
    report = {"sae": args.sae, "decoder_norms_folded": folded, "model_activation_rel_diff": same, "greyglass_vs_saebench_core": side_by_side(ours, core),
              "greyglass": ours, "saebench_core": core, "saebench_sparse_probing": probing,
              "seconds": round(time.time() - start, 1)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "saebench_evals.json").write_text(json.dumps(report, indent=2, default=float))
    print(json.dumps(report, indent=2, default=float))
    return 0 if same < 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
