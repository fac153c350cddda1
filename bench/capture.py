"""Capture throughput and memory against bare forward passes, measured in one process.

Prints JSON. Figures on the default model (SmolLM2-135M-Instruct), one mid-depth site:
  (a) `capture()` end to end (tokenising, early-stopped forward, writing shards),
  (a_hooks) only the early-stopped forward with the capture hook (`run_to_sites`),
  (b) a bare forward through the same blocks with no hooks (later blocks removed, no LM head),
  (c) a full forward pass with logits,
  (d) a full forward with `output_hidden_states=True` (what users do without greyglass);
ratios a/b (target >= 0.95) and a/c; and peak RSS of capture subprocesses storing 10k vs
100k tokens (target: flat).

    python bench/capture.py [--model M] [--batches 8] [--skip-memory]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import islice

import torch

from greyglass.data import CorpusConfig, windows
from greyglass.models.hooks import run_to_sites
from greyglass.models.loader import load_model
from greyglass.store.config import CaptureConfig
from greyglass.store.writer import capture


def interleaved_tokens_per_second(fns: dict, ids: torch.Tensor, rounds: int) -> dict[str, float]:
    """Median tokens/s of each function, timed in alternation so that drifts in machine speed
    (other processes, frequency scaling) hit every method alike."""
    for fn in fns.values():
        fn(ids)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn(ids)
            times[name].append(time.perf_counter() - start)
    return {name: ids.numel() / statistics.median(t) for name, t in times.items()}


def bare_forward_to(lm, layer: int):
    def run(ids):
        kept = list(lm.blocks)
        del lm.blocks[layer + 1 :]
        try:
            with torch.inference_mode():
                lm.model.base_model(input_ids=ids, use_cache=False)
        finally:
            lm.blocks.extend(kept[layer + 1 :])

    return run


def peak_rss_mib(model: str, site: str, tokens: int) -> float:
    """Peak RSS of a `greyglass capture` process, measured by a fresh parent of its own."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "greyglass.cli", "capture", "--model", model, "--site", site,
               "--tokens", str(tokens), "--out", f"{tmp}/s", "--no-progress"]
        parent = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
                  "capture_output=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        out = subprocess.run([sys.executable, "-c", parent, *cmd], check=True, capture_output=True, text=True)
    return int(out.stdout.strip()) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batches", type=int, default=8, help="timed rounds (one batch of 32 x 128 tokens per method each)")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()

    lm = load_model(args.model)
    layer = lm.n_layers // 2
    site = f"blocks.{layer}.hook_resid_post"
    corpus = CorpusConfig(context_size=128)
    batch = torch.tensor([w.tokens for w in islice(windows(lm.tokenizer, corpus, lm.prepend_bos), 32)])

    def full(ids):
        with torch.inference_mode():
            lm.model(input_ids=ids, use_cache=False)

    def hidden(ids):
        with torch.inference_mode():
            lm.model(input_ids=ids, use_cache=False, output_hidden_states=True)

    tps = interleaved_tokens_per_second({
        "hooks": lambda ids: run_to_sites(lm, ids, [site]),
        "bare": bare_forward_to(lm, layer),
        "full": full,
        "hidden": hidden,
    }, batch, args.batches)
    hooks, bare, full_tps, hidden_tps = tps["hooks"], tps["bare"], tps["full"], tps["hidden"]
    n = batch.numel() * args.batches
    with tempfile.TemporaryDirectory() as tmp:
        capture(lm, CaptureConfig(sites=(site,), tokens=batch.numel()), corpus, f"{tmp}/warm", progress=False)
        start = time.perf_counter()
        capture(lm, CaptureConfig(sites=(site,), tokens=n), corpus, f"{tmp}/s", progress=False)
        end_to_end = n / (time.perf_counter() - start)

    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, {platform.processor() or 'cpu'}",
        "model": lm.name,
        "site": site,
        "tokens_per_s": {
            "a_capture_end_to_end": round(end_to_end),
            "a_hooks_early_stop": round(hooks),
            "b_bare_forward_same_depth": round(bare),
            "c_full_forward": round(full_tps),
            "d_output_hidden_states": round(hidden_tps),
        },
        "ratio_a_over_b": round(end_to_end / bare, 3),
        "ratio_a_hooks_over_b": round(hooks / bare, 3),
        "ratio_a_over_c": round(end_to_end / full_tps, 3),
        "ratio_a_over_d": round(end_to_end / hidden_tps, 3),
    }
    if not args.skip_memory:
        small, large = peak_rss_mib(args.model, site, 10_000), peak_rss_mib(args.model, site, 100_000)
        result["peak_rss_mib"] = {"10k_tokens": round(small), "100k_tokens": round(large),
                                  "ratio_100k_over_10k": round(large / small, 3)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
