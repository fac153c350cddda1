"""`make saebench-check`: greyglass's first-letter absorption against SAEBench's own eval.

Runs in the sae-bench 0.6.0 environment (`.venv-saebench`, made by the Makefile): one greyglass
TopK SAE (trained here briefly, or `--sae FOLDER`), the embedded default model, the same sampled
words; then greyglass's first-letter absorption (`score_letters`, what `greyglass sae absorption` runs) and SAEBench's
`sae_bench.evals.absorption.main.run_eval`, and prints JSON with both headlines and whether they
agree within the tolerance.

How SAEBench is made to run here (no hub access):
- the model: SAEBench builds a TransformerLens HookedTransformer from a hub name, which does not
  know SmolLM2; the HookedTransformer is built from the local Llama weights instead
  (`convert_llama_weights`), cut after the SAE's layer and with a one-column unembedding (SAEBench
  reads only the residual stream at that layer, and the full unembedding costs more than the first
  layers), checked against greyglass's own forward pass at the site;
- the words: SAEBench's `get_alpha_tokens` (every letters-only token) returns greyglass's sample,
  padded with the first vocabulary words of any letter that has fewer than `PAD` in it (SAEBench
  needs every letter in its training split: it indexes 26 probes); greyglass scores the same list
  through its public pieces (`first_letter_prompts`, `word_activations`, `score_letters`);
- the SAE: wrapped as a SAEBench custom SAE with the decoder norms folded into the activations,
  as SAEBench folds them for SAELens SAEs;
- `min_feats_for_eval` is lowered to the letters a small sample can give (reported in the JSON).

Both sides use 10 in-context examples (SAEBench shuffles them per prompt; greyglass keeps one
fixed set) and hold out 30% of the words, so the difference between the two is the sampling of
the split and the examples plus the probes' random starts. Two independent estimates of one
quantity differ by less than sqrt(h1^2 + h2^2) 95% of the time, with h1, h2 their 95% half-widths
(greyglass's resamples letters; SAEBench's is 1.96 * its std over letters / sqrt(letters)): that
is the tolerance for each headline measure.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from greyglass.data.corpus import CorpusConfig
from greyglass.models.hooks import run_to_sites
from greyglass.models.loader import load_model
from greyglass.sae.absorption import LetterScores, first_letter_prompts, score_letters, vocab_words, word_activations
from greyglass.sae.config import AbsorptionConfig, SAEConfig, TopKConfig, TrainConfig
from greyglass.activations import model_windows, shuffled_rows
from greyglass.sae.train import train_saes, windows_per_forward

MEASURES = {"mean_absorption_fraction": ("mean_absorption_fraction_score", "std_dev_absorption_fraction_score"),
            "full_absorption_rate": ("mean_full_absorption_score", "std_dev_full_absorption_score"),
            "mean_split_features": ("mean_num_split_features", "std_dev_num_split_features")}


PAD = 5
"""Fewest words per letter handed to both sides."""


def shared_words(tokenizer, cfg: AbsorptionConfig) -> list:
    """greyglass's seeded sample (in-context examples first), plus vocabulary words of letters it leaves short."""
    sample = vocab_words(tokenizer, cfg.words + cfg.icl_examples, cfg.min_letters, cfg.seed, cfg.leading_space)
    everything = vocab_words(tokenizer, 10 ** 7, cfg.min_letters, cfg.seed, cfg.leading_space)
    have = {w.token for w in sample}
    extra = []
    for letter in "abcdefghijklmnopqrstuvwxyz":
        short = PAD - sum(w.letter == letter for w in sample)
        extra += [w for w in everything if w.letter == letter and w.token not in have][:max(short, 0)]
    return sample + extra


def greyglass_side(lm, sae, site: str, words: list, cfg: AbsorptionConfig) -> LetterScores:
    """`first_letter_absorption` on a given word list: the same steps through its public pieces."""
    prompts, scored = first_letter_prompts(lm.tokenizer, words, cfg.template, cfg.icl_examples)
    x = word_activations(lm, prompts, site, cfg.batch_size)
    with torch.no_grad():
        latents = sae.encode(x).float()
    return score_letters(sae, x, latents, [w.letter for w in scored], [w.text.strip() for w in scored], cfg)


def train_sae(lm, site: str, tokens: int, out: Path):
    """A small TopK SAE on the fly (expansion 4, k 16)."""
    cfg = SAEConfig(arch=TopKConfig(k=16), d_in=lm.d_model, d_sae=4 * lm.d_model, hook_name=site,
                    model_name=lm.spec, context_size=128, prepend_bos=lm.prepend_bos, dead_tokens=tokens // 4)
    tcfg = TrainConfig(tokens=tokens, batch_size=1024, lr=1e-3, warmup_steps=10)
    corpus = CorpusConfig(context_size=128)
    batches = shuffled_rows(lambda epoch: model_windows(lm, [site], corpus, windows_per_forward(corpus.context_size)),
                            tcfg.batch_size, tcfg.buffer_tokens, seed=tcfg.seed)
    return train_saes([cfg], tcfg, batches, out, progress=False).saes[0]


def hooked_transformer(lm, layer: int | None):
    """The HF Llama model as a TransformerLens HookedTransformer: blocks 0..layer with a one-column unembedding
    (enough to read the residual stream there), or with `layer` None the whole model."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.llama import convert_llama_weights

    hf = lm.model.config
    common = dict(d_model=hf.hidden_size, d_head=hf.head_dim, n_heads=hf.num_attention_heads,
                  d_mlp=hf.intermediate_size, n_ctx=2048, eps=hf.rms_norm_eps, d_vocab=hf.vocab_size,
                  act_fn="silu", n_key_value_heads=hf.num_key_value_heads, normalization_type="RMS",
                  positional_embedding_type="rotary", rotary_adjacent_pairs=False, rotary_dim=hf.head_dim,
                  final_rms=True, gated_mlp=True, rotary_base=hf.rope_parameters["rope_theta"],
                  original_architecture="LlamaForCausalLM", default_prepend_bos=lm.prepend_bos,
                  model_name="SmolLM2-135M-Instruct")
    full = HookedTransformerConfig(n_layers=hf.num_hidden_layers, **common)
    state = convert_llama_weights(lm.model, full)
    cfg = full
    if layer is not None:
        state = {k: v for k, v in state.items() if not k.startswith("blocks.") or int(k.split(".")[1]) <= layer}
        state["unembed.W_U"], state["unembed.b_U"] = torch.zeros(hf.hidden_size, 1), torch.zeros(1)
        cfg = HookedTransformerConfig(n_layers=layer + 1, d_vocab_out=1, **common)
    model = HookedTransformer(cfg, tokenizer=lm.tokenizer, move_to_device=False)
    model.load_and_process_state_dict(state, fold_ln=False, center_writing_weights=False, center_unembed=False,
                                      fold_value_biases=False, refactor_factored_attn_matrices=False)
    return model.eval()


def check_same_model(lm, model, site: str) -> float:
    """Largest relative difference between greyglass's and the HookedTransformer's activations at the site."""
    ids = lm.tokenizer("Tiger has the first letter: T\nhouse has the first letter:", return_tensors="pt").input_ids
    ours = run_to_sites(lm, ids, [site])[site].float()
    _, cache = model.run_with_cache(ids, names_filter=[site])
    return float((cache[site] - ours).abs().max() / ours.abs().max())


def saebench_sae(sae, layer: int):
    """The greyglass SAE as a SAEBench custom SAE: unit decoder rows in input units, norms folded into the latents."""
    from sae_bench.custom_saes.base_sae import BaseSAE

    W_dec = (sae.W_dec.detach().float() / sae.scale)  # [d_sae, d_in] in the input's units
    norms = W_dec.norm(dim=1)

    class Folded(BaseSAE):
        def encode(self, x):
            return sae.encode(x.float()) * norms

        def decode(self, acts):
            return acts @ self.W_dec + sae.b_dec.detach() / sae.scale

        def forward(self, x):
            return self.decode(self.encode(x))

    out = Folded(sae.cfg.d_in, sae.cfg.d_sae, "SmolLM2-135M-Instruct", layer, torch.device("cpu"), torch.float32,
                 hook_name=f"blocks.{layer}.hook_resid_post")
    with torch.no_grad():
        out.W_dec.copy_(W_dec / norms[:, None])
        out.W_enc.copy_(sae.W_enc.detach().float())
    return out


def run_saebench(model, sae, words: list[str], layer: int, test_fraction: float, min_letters: int, out: Path) -> dict:
    """SAEBench's run_eval on `words` (greyglass's sample) with the local model."""
    import sae_bench.evals.absorption.common as common
    import sae_bench.evals.absorption.feature_absorption as feature_absorption
    import sae_bench.evals.absorption.main as main
    import sae_bench.evals.absorption.probing as probing
    from sae_bench.evals.absorption.eval_config import AbsorptionEvalConfig

    common.get_alpha_tokens = feature_absorption.get_alpha_tokens = lambda tokenizer: list(words)
    common.create_dataset_probe_training = functools.partial(probing.create_dataset_probe_training,
                                                             train_test_fraction=1 - test_fraction)
    main.HookedTransformer = type("Local", (), {"from_pretrained_no_processing": staticmethod(lambda *a, **k: model)})
    # SAEBench writes its probes and intermediate tables under the working directory
    cfg = AbsorptionEvalConfig(model_name="SmolLM2-135M-Instruct", llm_batch_size=32, llm_dtype="float32",
                               min_feats_for_eval=min_letters, precalc_k_sparse_probe_sae_acts=True)
    out.mkdir(parents=True, exist_ok=True)  # run_eval writes its JSON there without creating it
    results = main.run_eval(cfg, [("greyglass", sae)], "cpu", str(out), force_rerun=True)
    if not results:
        return {}
    result = next(iter(results.values()))
    return {**result["eval_result_metrics"]["mean"], "letters": len(result["eval_result_details"])}


def compare(ours: LetterScores, theirs: dict) -> dict:
    """Each headline measure: both values, and whether they differ by less than the 95% bound on the
    difference of two independent estimates, sqrt(h_greyglass^2 + h_saebench^2), with h greyglass's
    interval half-width (letters resampled) and SAEBench's 1.96 * std over letters / sqrt(letters)."""
    rows = {}
    for key, (mean_key, std_key) in MEASURES.items():
        ref = theirs.get(mean_key)
        est = getattr(ours.headline, key)
        ours_half = (est.hi - est.lo) / 2
        ref_half = 1.96 * theirs[std_key] / theirs["letters"] ** 0.5 if ref is not None else float("nan")
        tolerance = (ours_half ** 2 + ref_half ** 2) ** 0.5
        rows[key] = {"greyglass": est.value, "greyglass_ci": [est.lo, est.hi], "saebench": ref,
                     "saebench_half_width": round(ref_half, 4), "tolerance": round(tolerance, 4),
                     "difference": None if ref is None else round(est.value - ref, 4),
                     "agree": ref is not None and abs(est.value - ref) <= tolerance}
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sae", help="a greyglass SAE folder (default: train a small TopK SAE here)")
    p.add_argument("--layer", type=int, default=4, help="the residual-stream layer of the trained SAE")
    p.add_argument("--train-tokens", type=int, default=200_000)
    p.add_argument("--words", type=int, default=1500)
    p.add_argument("--min-letters-scored", type=int, default=10, help="SAEBench's min_feats_for_eval (20 there)")
    p.add_argument("--out", default="runs/saebench_check")
    args = p.parse_args()
    try:
        import sae_bench  # noqa: F401
    except ImportError:  # `make bench` runs every bench script in greyglass's own environment
        print(json.dumps({"skipped": "sae_bench is not importable here; `make saebench-check` installs it "
                                     "into .venv-saebench and runs this script there"}))
        return 0
    torch.manual_seed(0)
    start = time.time()
    lm = load_model()
    out = Path(args.out)
    if args.sae:
        from greyglass.sae.io import load_sae
        sae = load_sae(args.sae)
    else:
        sae = train_sae(lm, f"blocks.{args.layer}.hook_resid_post", args.train_tokens, out / "sae")
    site = lm.site(sae.cfg.hook_name).name
    layer = int(site.split(".")[1])
    cfg = AbsorptionConfig(words=args.words, icl_examples=10, test_fraction=0.3)
    shared = shared_words(lm.tokenizer, cfg)
    words = [w.text for w in shared]
    ours = greyglass_side(lm, sae, site, shared, cfg)
    model = hooked_transformer(lm, layer)
    same = check_same_model(lm, model, site)
    with tempfile.TemporaryDirectory() as tmp:
        import os
        here = os.getcwd()
        os.chdir(tmp)  # SAEBench's artifacts go to a scratch folder
        try:
            theirs = run_saebench(model, saebench_sae(sae, layer), words, layer, cfg.test_fraction,
                                  args.min_letters_scored, Path(tmp) / "results")
        finally:
            os.chdir(here)
    report = {"site": site, "words": len(words), "model_activation_rel_diff": same,
              "letters_scored": {"greyglass": ours.headline.letters_scored, "saebench": theirs.get("letters")},
              "measures": compare(ours, theirs),
              "saebench_mean": theirs, "seconds": round(time.time() - start, 1)}
    report["agree"] = same < 1e-3 and all(m["agree"] for m in report["measures"].values())
    out.mkdir(parents=True, exist_ok=True)
    (out / "agreement.json").write_text(json.dumps(report, indent=2, default=float))
    print(json.dumps(report, indent=2, default=float))
    return 0 if report["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
