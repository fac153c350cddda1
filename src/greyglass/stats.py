"""Honest numbers: AUROC, TPR at a fixed FPR, bootstrap and Wilson confidence intervals.

Every metric greyglass reports comes with a 95% interval from a seeded percentile bootstrap,
so a reader can tell a real effect from noise. Where items cluster (statements of one fact,
biographies around one question, words of one letter) the bootstrap resamples whole clusters:
resampling rows would treat near-copies as independent evidence and give intervals that are
too narrow. Proportions use `proportion_ci`, and AUROC and TPR use `auroc_ci` and `tpr_ci`: none
returns a zero-width interval from a finite sample (a percentile bootstrap of all-0 outcomes is
"0% (0-0%)", of perfectly separated scores "AUROC 1.000 (1.000-1.000)").

AUROC is the metric bootstrapped most (every layer of every probe sweep), so `bootstrap`
evaluates it for all resamples at once from one sort of the data, with each resample given
as row multiplicities: the same numbers as calling `auroc` on each resample, 10 to 30 times
faster (docs/benchmarks.md).
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
    from scipy.stats import rankdata  # scipy.stats takes ~2 s to import: only when a metric is computed

    ranks = rankdata(np.concatenate([pos, neg]))  # ties get their average rank
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


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
    groups: Sequence | np.ndarray | None = None,
    n: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Estimate:
    """`metric(*arrays)` with a percentile-bootstrap interval, resampling rows jointly.

    With `groups` (one label per row), whole groups are resampled instead (a cluster
    bootstrap): each resample draws as many groups as there are, with replacement, and keeps
    every row of each drawn group. `auroc` is evaluated for all resamples at once (same values).
    """
    arrs = [np.asarray(a) for a in arrays]
    value = float(metric(*arrs))
    rng = np.random.default_rng(seed)
    units = _Units(groups, len(arrs[0]))
    if metric is auroc and len(arrs) == 2 and units.k > 0:
        samples = _auroc_of_resamples(*arrs, units, rng, n)
    else:
        samples = np.array([_metric_of(metric, arrs, units.rows(units.draw(rng, 1)[0])) for _ in range(n)])
    samples = samples[np.isfinite(samples)]
    if len(samples) == 0:
        return Estimate(value, float("nan"), float("nan"))
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(samples, [tail, 100 - tail])
    return Estimate(value, float(lo), float(hi))


def _metric_of(metric: Callable[..., float], arrays: list[np.ndarray], rows: np.ndarray) -> float:
    """`metric` of one resample: the same rows of every array (drawn once, so they stay paired)."""
    return float(metric(*(a[rows] for a in arrays)))


class _Units:
    """What a bootstrap draws with replacement: the rows, or (with `groups`) whole groups of rows."""

    def __init__(self, groups: Sequence | np.ndarray | None, m: int):
        self.grouped = groups is not None
        if groups is None:
            self.unit_of_row, self.k = np.arange(m), m
            return
        labels = np.asarray(groups)
        if len(labels) != m:
            raise ValueError(f"groups has {len(labels)} labels for {m} rows")
        _, self.unit_of_row = np.unique(labels, return_inverse=True)
        self.k = int(self.unit_of_row.max()) + 1 if m else 0
        self.members = np.split(np.argsort(self.unit_of_row, kind="stable"),
                                np.cumsum(np.bincount(self.unit_of_row, minlength=self.k))[:-1])

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """[size, k] unit ids: `size` resamples; one call of any size continues the same stream."""
        return rng.integers(0, self.k, (size, self.k))

    def rows(self, drawn: np.ndarray) -> np.ndarray:
        """The row indices of one resample (every row of each drawn unit)."""
        if not self.grouped or len(drawn) == 0:
            return drawn
        return np.concatenate([self.members[u] for u in drawn])

    def tally(self, drawn: np.ndarray, code: np.ndarray, n_codes: int) -> np.ndarray:
        """[resamples, n_codes]: how many rows of each code (a row's category) each resample holds."""
        if not self.grouped:
            return _bincount_rows(code[drawn], n_codes)
        from scipy.sparse import csr_matrix

        unit_codes = csr_matrix((np.ones(len(code)), (self.unit_of_row, code)), shape=(self.k, n_codes))
        return np.asarray((unit_codes.T @ _bincount_rows(drawn, self.k).T.astype(float)).T)

    def chunks(self, n: int, width: int, cells: int = 1 << 20) -> list[int]:
        """Resamples per batch, so that a batch's [resamples, units or width] arrays stay near 8 MB."""
        step = max(1, cells // max(self.k, width))
        return [min(step, n - start) for start in range(0, n, step)]


def _bincount_rows(values: np.ndarray, n_values: int) -> np.ndarray:
    """[rows, n_values]: how often each value in [0, n_values) occurs in each row of `values`."""
    flat = (values + n_values * np.arange(len(values))[:, None]).ravel()
    return np.bincount(flat, minlength=len(values) * n_values).reshape(len(values), n_values)


def _auroc_of_resamples(scores: np.ndarray, labels: np.ndarray, units: _Units, rng: np.random.Generator,
                        n: int) -> np.ndarray:
    """`auroc` of `n` resamples drawn by `units` from `rng`, without building any resample.

    Each row's code is its (distinct score, label); a resample is tallied by code, and per
    distinct score the positives times the negatives below it (ties count half) sum to the
    Mann-Whitney count. The sums are exact integers, so each value equals `auroc` of the
    expanded resample (ranks from `rankdata`) to the last bit.
    """
    s, y = np.asarray(scores, dtype=float), np.asarray(labels).astype(bool)
    distinct, level = np.unique(s, return_inverse=True)  # one NaN level, last, for any NaN scores
    code, n_codes = 2 * level + y, 2 * len(distinct)
    out = []
    for size in units.chunks(n, n_codes):
        tally = units.tally(units.draw(rng, size), code, n_codes)
        neg, pos = tally[:, 0::2], tally[:, 1::2]
        twice_u = (pos * (2 * np.cumsum(neg, axis=1) - neg)).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            values = twice_u / (2 * pos.sum(axis=1) * neg.sum(axis=1))  # NaN where a resample lacks a class
        if np.isnan(distinct[-1]):
            values[tally[:, -2:].sum(axis=1) > 0] = np.nan  # as with rankdata: a NaN score makes AUROC NaN
        out.append(values)
    return np.concatenate(out)


def n_groups(groups: Sequence | np.ndarray | None, m: int) -> int:
    """How many independent units `m` rows hold: the distinct groups, or the rows when ungrouped."""
    return m if groups is None else len(np.unique(np.asarray(groups)))


def mean_ci(values: Sequence[float] | np.ndarray, groups: Sequence | np.ndarray | None = None,
            n: int = 1000, seed: int = 0) -> Estimate:
    """The mean with a bootstrap 95% interval (a cluster bootstrap when `groups` is given)."""
    return bootstrap(np.mean, values, groups=groups, n=n, seed=seed)


def proportion_ci(outcomes: Sequence[float] | np.ndarray, groups: Sequence | np.ndarray | None = None,
                  n: int = 1000, seed: int = 0) -> Estimate:
    """The share of positive outcomes (0/1, or a mean of probabilities) with a 95% interval
    that is never zero-width.

    Ungrouped: the Wilson interval. Grouped: the cluster bootstrap, widened to cover the Wilson
    interval computed as if each group were one observation (the worst case, every row of a
    group alike), since a bootstrap over few clusters, or of all-0/all-1 outcomes, is too narrow.
    """
    x = np.asarray(outcomes, dtype=float)
    if len(x) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"))
    units = n_groups(groups, len(x))
    worst = wilson(float(x.mean()) * units, units)
    if groups is None:
        return Estimate(float(x.mean()), worst.lo, worst.hi)
    boot = bootstrap(np.mean, x, groups=groups, n=n, seed=seed)
    return Estimate(float(x.mean()), min(boot.lo, worst.lo), max(boot.hi, worst.hi))


def auroc_ci(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray,
             groups: Sequence | np.ndarray | None = None, n: int = 1000, seed: int = 0) -> Estimate:
    """AUROC with its (cluster) bootstrap 95% interval, never zero-width.

    Where every resample separates the classes perfectly (or not at all) the bootstrap interval
    is a point, though a finite sample cannot rule out some misordered pairs. AUROC is the share
    of (positive, negative) pairs ordered right, and its variance is at most A(1 - A) / m for m
    the smaller class (van Dantzig's bound), so the interval is then the Wilson interval of a
    proportion A over m: the smaller class's count of independent units (its groups).
    """
    y = np.asarray(labels).astype(bool)
    est = bootstrap(auroc, scores, y, groups=groups, n=n, seed=seed)
    return _never_zero_width(est, min(_units_with(groups, y), _units_with(groups, ~y)))


def tpr_ci(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray, fpr: float = 0.01,
           groups: Sequence | np.ndarray | None = None, n: int = 1000, seed: int = 0) -> Estimate:
    """TPR at `fpr` with its (cluster) bootstrap 95% interval, never zero-width: where the
    bootstrap is a point, the Wilson interval of the rate over the positives' independent units."""
    y = np.asarray(labels).astype(bool)
    est = bootstrap(lambda a, b: tpr_at_fpr(a, b, fpr), scores, y, groups=groups, n=n, seed=seed)
    return _never_zero_width(est, _units_with(groups, y))


def _units_with(groups: Sequence | np.ndarray | None, rows: np.ndarray) -> int:
    """How many independent units hold the selected `rows`: their groups, or the rows when ungrouped."""
    return int(rows.sum()) if groups is None else len(np.unique(np.asarray(groups)[rows]))


def _never_zero_width(est: Estimate, units: int) -> Estimate:
    """`est` as it is, unless its interval is a point: then the Wilson interval of its value over `units`."""
    if not (np.isfinite(est.lo) and est.hi == est.lo and units > 0):
        return est
    worst = wilson(est.value * units, units)
    return Estimate(est.value, min(est.lo, worst.lo), max(est.hi, worst.hi))


def unpaired_difference_ci(first: Sequence[float], first_groups: Sequence, second: Sequence[float],
                           second_groups: Sequence, n: int = 1000, seed: int = 0) -> Estimate:
    """mean(first) - mean(second) of two independent samples, with a 95% interval from resampling each
    sample's groups on its own; never zero-width: where the bootstrap is a point (both samples constant,
    e.g. no failure on either side) Newcombe's interval from each side's `proportion_ci` is used."""
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if len(a) == 0 or len(b) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = []
    for x, groups in ((a, first_groups), (b, second_groups)):
        units = _Units(groups, len(x))
        means.append(np.array([x[units.rows(drawn)].mean() for drawn in units.draw(rng, n)]))
    d = float(a.mean() - b.mean())
    lo, hi = np.percentile(means[0] - means[1], [2.5, 97.5])
    if hi > lo:
        return Estimate(d, float(lo), float(hi))
    return newcombe(proportion_ci(a, first_groups, seed=seed), proportion_ci(b, second_groups, seed=seed))


def newcombe(first: Estimate, second: Estimate) -> Estimate:
    """first - second, with Newcombe's interval from the two sides' own intervals (the square-root rule)."""
    d = first.value - second.value
    return Estimate(d, d - float(np.hypot(first.value - first.lo, second.hi - second.value)),
                    d + float(np.hypot(first.hi - first.value, second.value - second.lo)))


def wilson(successes: float, n: int, z: float = 1.96) -> Estimate:
    """A proportion with its Wilson 95% interval: unlike a bootstrap, not [0, 0] when nothing happened."""
    if n <= 0:
        return Estimate(float("nan"), float("nan"), float("nan"))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * float(np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n)
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half))


def mean_probability_ci(values: Sequence[float] | np.ndarray, groups: Sequence | np.ndarray | None = None,
                        n: int = 1000, seed: int = 0) -> Estimate:
    """The mean of per-item probabilities with a (cluster) bootstrap 95% interval, never zero-width.

    A mean probability is not a share of 0/1 outcomes, so its interval is the bootstrap's (a
    Wilson interval would assume the worst-case spread); but where every item sits at the same
    probability (saturated at 0 or 1 under strong steering) the bootstrap has nothing to
    resample and would print "100% (100-100%)", so the interval is then `proportion_ci`'s.
    """
    est = mean_ci(values, groups=groups, n=n, seed=seed)
    return est if est.hi > est.lo else proportion_ci(values, groups=groups, n=n, seed=seed)
