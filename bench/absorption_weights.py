"""Weights-only absorption detector: blocked (greyglass) against the naive dense d_sae x d_sae computation.

Prints JSON. For each d_sae: seconds and the bytes of the score matrices held at once by
`detect_absorption` (blocks of parents, top pairs kept) and by the naive version that forms the full `[d_sae, d_sae]` score
matrix and takes its top pairs; their ratio; whether both return the same pairs. The naive
one is skipped above `--naive-max` (its matrices alone need 3 * 4 * d_sae^2 bytes).

    python bench/absorption_weights.py [--d-in 576] [--d-sae 4608 16384 32768] [--block 1024] [--top 1000]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from greyglass.sae.absorption_detector import detect_absorption
from greyglass.sae.architectures import create_sae
from greyglass.sae.config import SAEConfig, TopKConfig
from greyglass.sae.model import SparseAutoencoder


def naive(sae: SparseAutoencoder, top: int):
    dec = sae.W_dec / sae.W_dec.norm(dim=1, keepdim=True)
    enc = (sae.W_enc / sae.W_enc.norm(dim=0, keepdim=True)).T
    cos = dec @ dec.T  # [d_sae, d_sae]
    gap = cos * (enc * dec).sum(-1)[:, None] - enc @ dec.T
    score = (cos.clamp(min=0) * gap.clamp(min=0)).fill_diagonal_(0)
    return score.flatten().topk(top)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--d-in", type=int, default=576)
    parser.add_argument("--d-sae", type=int, nargs="+", default=[4608, 16384, 32768])
    parser.add_argument("--block", type=int, default=1024)
    parser.add_argument("--top", type=int, default=1000)
    parser.add_argument("--naive-max", type=int, default=16384)
    args = parser.parse_args()
    rows = []
    with torch.no_grad():
        for d_sae in args.d_sae:
            sae = create_sae(SAEConfig(d_in=args.d_in, d_sae=d_sae, arch=TopKConfig(k=32)), seed=0)
            sae.W_enc.add_(0.3 * torch.randn_like(sae.W_enc))  # encoder != decoder, as after training
            pairs, t_blocked = timed(lambda: detect_absorption(sae, top=args.top, block=args.block))
            row = {"d_sae": d_sae, "blocked_seconds": round(t_blocked, 3),
                   "blocked_matrix_bytes": 3 * 4 * args.block * d_sae}
            if d_sae <= args.naive_max:
                dense, t_naive = timed(lambda: naive(sae, args.top))
                row |= {"naive_seconds": round(t_naive, 3), "naive_matrix_bytes": 3 * 4 * d_sae * d_sae,
                        "speed_ratio_naive_over_blocked": round(t_naive / t_blocked, 3),
                        "same_scores": bool(torch.allclose(pairs.scores, dense.values[: len(pairs.scores)],
                                                           rtol=1e-4, atol=1e-6))}
            rows.append(row)
    print(json.dumps({"machine": platform.machine(), "threads": torch.get_num_threads(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
