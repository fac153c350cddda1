"""Feature-statistics throughput: the streaming accumulator against the naive reference, in one process.

Prints JSON. Synthetic TopK-like latents (k active per token) so the figure isolates the
statistics, not the model: latents x tokens per second for
  (a) `StatsAccumulator.update` over batches (bounded memory: state is O(d_sae * k * window)),
  (b) `naive_feature_stats` (all latents in memory at once, then latent by latent),
the ratio a/b, and the memory each holds (state bytes vs the full [tokens, d_sae] matrix).
A second streaming run at a larger size shows the throughput at a realistic width; its
statistics are written to a feature database and the three searches are timed on it
(fires-on a token, full-text over labels, one latent's full row), against a linear scan of
the same rows loaded as Python dicts (what a JSON file would give).

    python bench/latents.py [--d-sae 1024] [--tokens 4096] [--big-d-sae 16384] [--big-tokens 16384]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from greyglass.latents.db import FeatureDB, write_db
from greyglass.latents.stats import StatsAccumulator, naive_feature_stats


def synthetic(n_windows: int, T: int, d_sae: int, active: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 50_000, (n_windows, T), generator=g)
    idx = torch.randint(0, d_sae, (n_windows * T, active), generator=g)
    lat = torch.zeros(n_windows * T, d_sae).scatter_(1, idx, torch.rand(n_windows * T, active, generator=g) * 5)
    mask = torch.ones(n_windows, T, dtype=torch.bool)
    mask[:, 0] = False
    return tokens, lat.reshape(n_windows, T, d_sae), mask


def streaming(tokens, lat, mask, batch_windows: int = 8) -> tuple[float, int, StatsAccumulator]:
    acc = StatsAccumulator(lat.shape[-1])
    start = time.perf_counter()
    for b in range(0, len(tokens), batch_windows):
        acc.update(tokens[b:b + batch_windows], lat[b:b + batch_windows], mask[b:b + batch_windows])
    seconds = time.perf_counter() - start
    state = sum(t.numel() * t.element_size() for tc in (acc.top, acc.samples)
                for t in (tc.keys, tc.acts, tc.where, tc.tokens, tc.ctx_acts)) + acc.hist.numel() * 8
    return seconds, state, acc


def timed(fn, repeats: int = 20) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def search_latency(acc: StatsAccumulator) -> dict:
    """Milliseconds per query on a feature database of `acc`'s statistics, vs scanning the rows."""
    stats = acc.result()
    strings = {i: f" w{i % 5000}" for i in range(50_000)}  # token text: 5000 distinct words
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "features.sqlite"
        start = time.perf_counter()
        write_db(path, stats, None, strings, {"d_sae": stats.d_sae})
        write_s = time.perf_counter() - start
        db = FeatureDB(path)
        rows = [db.latent(j) for j in range(stats.d_sae)]  # the JSON-file alternative: everything in memory
        word = db.latent(0)["top"][0]["tokens"][db.latent(0)["top"][0]["centre_index"]][0]

        def scan():
            return [r["latent"] for r in rows if any(c["tokens"][c["centre_index"]][0] == word for c in r["top"])]

        return {"d_sae": stats.d_sae, "write_seconds": round(write_s, 2),
                "fires_on_ms": round(1000 * timed(lambda: db.fires_on(word)), 3),
                "label_search_ms": round(1000 * timed(lambda: db.search("w1")), 3),
                "latent_row_ms": round(1000 * timed(lambda: db.latent(123)), 3),
                "scan_fires_on_ms": round(1000 * timed(scan, 3), 3),
                "ratio_scan_over_fires_on": round(timed(scan, 3) / timed(lambda: db.fires_on(word)), 1)}


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
    s_stream, state, _ = streaming(tokens, lat, mask)
    start = time.perf_counter()
    naive_feature_stats(tokens, lat, mask)
    s_naive = time.perf_counter() - start
    big = synthetic(args.big_tokens // T, T, args.big_d_sae, args.active)
    s_big, big_state, big_acc = streaming(*big)
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
        "search": search_latency(big_acc),
    }, indent=2))


if __name__ == "__main__":
    main()
