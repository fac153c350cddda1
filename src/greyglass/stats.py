"""Honest numbers: AUROC, TPR at a fixed FPR, bootstrap and Wilson confidence intervals.

Every metric greyglass reports comes with a 95% interval from a seeded percentile bootstrap
over items, so a reader can tell a real effect from noise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np


class Estimate(NamedTuple):
    """A point estimate with its bootstrap 95% interval."""

    value: float
    lo: float
    hi: float

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "ci_low": self.lo, "ci_high": self.hi}


def auroc(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """Area under the ROC curve (probability a random positive outscores a random negative; ties count half)."""
    s, y = np.asarray(scores, dtype=float), np.asarray(labels).astype(bool)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    ranks = _average_ranks(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _average_ranks(x: np.ndarray) -> np.ndarray:
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


def tpr_at_fpr(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray, fpr: float = 0.01) -> float:
    """True-positive rate at the threshold where at most `fpr` of negatives score above it."""
    s, y = np.asarray(scores, dtype=float), np.asarray(labels).astype(bool)
    neg = np.sort(s[~y])
    if len(neg) == 0 or y.sum() == 0:
        return float("nan")
    allowed = int(np.floor(fpr * len(neg)))
    threshold = neg[len(neg) - allowed - 1] if allowed < len(neg) else -np.inf
    return float((s[y] > threshold).mean())


def bootstrap(
    metric: Callable[..., float],
    *arrays: Sequence | np.ndarray,
    n: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Estimate:
    """`metric(*arrays)` with a percentile-bootstrap interval, resampling items (rows) jointly."""
    arrs = [np.asarray(a) for a in arrays]
    value = float(metric(*arrs))
    rng = np.random.default_rng(seed)
    m = len(arrs[0])
    samples = []
    for _ in range(n):
        idx = rng.integers(0, m, m)
        v = metric(*(a[idx] for a in arrs))
        if np.isfinite(v):
            samples.append(v)
    if not samples:
        return Estimate(value, float("nan"), float("nan"))
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(samples, [tail, 100 - tail])
    return Estimate(value, float(lo), float(hi))


def mean_ci(values: Sequence[float] | np.ndarray, n: int = 1000, seed: int = 0) -> Estimate:
    """The mean with a bootstrap 95% interval."""
    return bootstrap(np.mean, values, n=n, seed=seed)


def wilson(successes: int, n: int, z: float = 1.96) -> Estimate:
    """A proportion with its Wilson 95% interval: unlike a bootstrap, not [0, 0] when nothing happened."""
    if n <= 0:
        return Estimate(float("nan"), float("nan"), float("nan"))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * float(np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n)
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half))
