"""Bootstrap of AUROC: all resamples at once against the per-resample loops it replaced, in one process.

Prints JSON. Synthetic scores with ties (rounded to 0.01) and 0/1 labels, 1,000 resamples
(the default), rows and clusters of 5 rows. For each size, the median seconds of
  (a) the first loop: one `auroc` per resample, ranks from a Python loop over tied runs,
  (b) the second loop: one `auroc` per resample, ranks from scipy's `rankdata`,
  (c) `stats.bootstrap(auroc, ...)`: every resample from one tally of the data,
the ratios a/c and b/c, and whether the three intervals are equal to the last bit.

    python bench/stats.py [--sizes 200 1000 5000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
from scipy.stats import rankdata

from greyglass.stats import auroc, bootstrap


def python_loop_ranks(x: np.ndarray) -> np.ndarray:
    """The original `stats._average_ranks`: a Python loop over runs of tied values."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def auroc_with(rank):
    def metric(scores: np.ndarray, labels: np.ndarray) -> float:
        y = labels.astype(bool)
        pos, neg = scores[y], scores[~y]
        if len(pos) == 0 or len(neg) == 0:
            return float("nan")
        ranks = rank(np.concatenate([pos, neg]))
        return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))
    return metric


def loop_bootstrap(metric, scores, labels, groups, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    """The bootstrap as it was: one draw and one metric call per resample."""
    rng = np.random.default_rng(seed)
    m = len(scores)
    members = None if groups is None else [np.flatnonzero(groups == g) for g in np.unique(groups)]
    samples = []
    for _ in range(n):
        idx = (rng.integers(0, m, m) if members is None
               else np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))]))
        v = metric(scores[idx], labels[idx])
        if np.isfinite(v):
            samples.append(v)
    tail = (1 - 0.95) / 2 * 100
    lo, hi = np.percentile(samples, [tail, 100 - tail])
    return float(lo), float(hi)


def median_seconds(fn, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def measure(m: int, grouped: bool, repeats: int) -> dict:
    rng = np.random.default_rng(m)
    scores, labels = rng.normal(size=m).round(2), rng.integers(0, 2, m)
    groups = np.arange(m) // 5 if grouped else None
    a, ci_a = median_seconds(lambda: loop_bootstrap(auroc_with(python_loop_ranks), scores, labels, groups), repeats)
    b, ci_b = median_seconds(lambda: loop_bootstrap(auroc_with(rankdata), scores, labels, groups), repeats)
    c, est = median_seconds(lambda: bootstrap(auroc, scores, labels, groups=groups), repeats)
    return {"rows": m, "clusters_of_5": grouped,
            "ms": {"a_python_rank_loop": round(1000 * a, 1), "b_rankdata_loop": round(1000 * b, 1),
                   "c_all_resamples_at_once": round(1000 * c, 1)},
            "ratio_a_over_c": round(a / c, 1), "ratio_b_over_c": round(b / c, 1),
            "same_interval": ci_a == ci_b == (est.lo, est.hi)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[200, 1000, 5000])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(json.dumps({
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "numpy": np.__version__},
        "resamples": 1000,
        "results": [measure(m, grouped, args.repeats) for m in args.sizes for grouped in (False, True)],
    }, indent=2))


if __name__ == "__main__":
    main()
