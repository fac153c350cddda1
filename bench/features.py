"""Feature-statistics throughput: the streaming accumulator against the naive reference, in one process.

Prints JSON. Synthetic TopK-like latents (k active per token) so the figure isolates the
statistics, not the model: latents x tokens per second for
  (a) `StatsAccumulator.update` over batches (bounded memory: state is O(d_sae * k * window)),
  (b) `naive_feature_stats` (all latents in memory at once, then latent by latent),
the ratio a/b, and the memory each holds (state bytes vs the full [tokens, d_sae] matrix).
A second streaming run at a larger size shows the throughput at a realistic width.

    python bench/features.py [--d-sae 1024] [--tokens 4096] [--big-d-sae 16384] [--big-tokens 16384]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from greyglass.features.stats import StatsAccumulator, naive_feature_stats


def synthetic(n_windows: int, T: int, d_sae: int, active: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 50_000, (n_windows, T), generator=g)
    idx = torch.randint(0, d_sae, (n_windows * T, active), generator=g)
    lat = torch.zeros(n_windows * T, d_sae).scatter_(1, idx, torch.rand(n_windows * T, active, generator=g) * 5)
    mask = torch.ones(n_windows, T, dtype=torch.bool)
    mask[:, 0] = False
    return tokens, lat.reshape(n_windows, T, d_sae), mask


def streaming(tokens, lat, mask, batch_windows: int = 8) -> tuple[float, int]:
    acc = StatsAccumulator(lat.shape[-1])
    start = time.perf_counter()
    for b in range(0, len(tokens), batch_windows):
        acc.update(tokens[b:b + batch_windows], lat[b:b + batch_windows], mask[b:b + batch_windows])
    seconds = time.perf_counter() - start
    state = sum(t.numel() * t.element_size() for tc in (acc.top, acc.samples)
                for t in (tc.keys, tc.acts, tc.where, tc.tokens, tc.ctx_acts)) + acc.hist.numel() * 8
    return seconds, state


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--d-sae", type=int, default=1024)
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--big-d-sae", type=int, default=16384)
    ap.add_argument("--big-tokens", type=int, default=16384)
    ap.add_argument("--active", type=int, default=32, help="latents active per token (TopK k)")
    args = ap.parse_args()
    T = 128
    tokens, lat, mask = synthetic(args.tokens // T, T, args.d_sae, args.active)
    n = int(mask.sum())
    s_stream, state = streaming(tokens, lat, mask)
    start = time.perf_counter()
    naive_feature_stats(tokens, lat, mask)
    s_naive = time.perf_counter() - start
    big = synthetic(args.big_tokens // T, T, args.big_d_sae, args.active)
    s_big, big_state = streaming(*big)
    n_big = int(big[2].sum())
    print(json.dumps({
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()},
        "small": {"d_sae": args.d_sae, "tokens": n,
                  "streaming_latent_tokens_per_s": round(args.d_sae * n / s_stream),
                  "naive_latent_tokens_per_s": round(args.d_sae * n / s_naive),
                  "ratio_streaming_over_naive": round(s_naive / s_stream, 2),
                  "streaming_state_mib": round(state / 2**20, 2),
                  "naive_latents_matrix_mib": round(n * args.d_sae * 4 / 2**20, 2)},
        "big": {"d_sae": args.big_d_sae, "tokens": n_big,
                "streaming_latent_tokens_per_s": round(args.big_d_sae * n_big / s_big),
                "streaming_state_mib": round(big_state / 2**20, 2),
                "full_latents_matrix_mib_if_kept": round(n_big * args.big_d_sae * 4 / 2**20, 2)},
    }, indent=2))


if __name__ == "__main__":
    main()
