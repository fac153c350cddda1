import math

import numpy as np
import pytest
import torch
from scipy.stats import rankdata

from greyglass import GreyglassError
from greyglass.directions import Direction
from greyglass.stats import auroc, bootstrap, mean_ci, proportion_ci, tpr_at_fpr


def test_auroc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    s, y = rng.normal(size=200).round(1), rng.integers(0, 2, 200)
    pos, neg = s[y == 1], s[y == 0]
    pairwise = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert auroc(s, y) == pytest.approx(pairwise)
    assert auroc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0 and auroc([4, 3, 2, 1], [0, 0, 1, 1]) == 0.0


def naive_average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks from 1, tied values sharing their average rank: the loop greyglass once used."""
    order = np.argsort(x, kind="mergesort")
    ranks, i = np.empty(len(x)), 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and x[order[j + 1]] == x[order[i]]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def naive_auroc(s: np.ndarray, y: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    ranks = naive_average_ranks(np.concatenate([pos, neg]))
    return (ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def naive_bootstrap(metric, *arrays, groups=None, n=1000, seed=0):
    """The per-resample loop: one draw and one `metric` call per resample."""
    rng = np.random.default_rng(seed)
    m = len(arrays[0])
    members = None if groups is None else [np.flatnonzero(groups == g) for g in np.unique(groups)]
    samples = []
    for _ in range(n):
        idx = (rng.integers(0, m, m) if members is None
               else np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))]))
        samples.append(metric(*(a[idx] for a in arrays)))
    samples = [v for v in samples if np.isfinite(v)]
    tail = (1 - 0.95) / 2 * 100  # bootstrap's own arithmetic (2.5000000000000022), for equal bits
    return np.percentile(samples, [tail, 100 - tail]) if samples else (math.nan, math.nan)


@pytest.mark.parametrize("seed", range(6))
def test_auroc_with_ties_matches_the_naive_ranks_and_sklearn(seed):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    m = int(rng.integers(2, 300))
    s = rng.integers(0, int(rng.integers(2, 12)), m).astype(float)  # few distinct values: many ties
    y = rng.integers(0, 2, m)
    y[:2] = [0, 1]  # both classes present
    assert auroc(s, y) == pytest.approx(naive_auroc(s, y), abs=1e-12)
    assert auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert np.array_equal(rankdata(s), naive_average_ranks(s))


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("m", [3, 40, 4000])
def test_bootstrap_of_auroc_all_resamples_at_once_equals_the_loop(m, grouped):
    # Same seeded draws, same resamples: the intervals are the loop's to the last bit (with 3
    # rows many resamples lack a class and are skipped; with 4,000 ungrouped rows the work is split in two batches).
    rng = np.random.default_rng(m)
    s, y = rng.normal(size=m).round(1), rng.integers(0, 2, m)
    s[0] = np.inf if grouped else s[0]
    groups = rng.integers(0, max(m // 5, 2), m) if grouped else None
    est = bootstrap(auroc, s, y, groups=groups, n=300, seed=7)
    assert est.value == naive_auroc(s, y)
    assert (est.lo, est.hi) == tuple(naive_bootstrap(naive_auroc, s, y, groups=groups, n=300, seed=7))
    s[1] = np.nan  # as rankdata: a resample holding a NaN score has no AUROC
    want = naive_bootstrap(lambda a, b: auroc(a, b), s, y, groups=groups, n=300, seed=7)
    assert bootstrap(auroc, s, y, groups=groups, n=300, seed=7)[1:] == pytest.approx(tuple(want), nan_ok=True)


def test_tpr_at_fpr():
    scores = np.r_[np.arange(100), np.arange(50, 150)]
    labels = np.r_[np.zeros(100), np.ones(100)]
    assert tpr_at_fpr(scores, labels, 0.0) == pytest.approx(0.5)  # above the max negative (99)
    assert tpr_at_fpr(scores, labels, 0.10) == pytest.approx(0.60)  # 10 negatives above 89; positives 90..149


def test_bootstrap_interval_contains_the_truth_and_shrinks():
    rng = np.random.default_rng(1)
    small, large = mean_ci(rng.normal(1, 1, 50)), mean_ci(rng.normal(1, 1, 2000))
    assert small.lo < 1 < small.hi and large.lo < 1 < large.hi
    assert (large.hi - large.lo) < (small.hi - small.lo)
    est = bootstrap(auroc, rng.normal(size=100), rng.integers(0, 2, 100), n=200)
    assert est.lo <= est.value <= est.hi


def test_cluster_bootstrap_is_wider_than_the_row_bootstrap_for_near_copies():
    # 15 questions, each asked with 40 biographies that barely change the answer: 600 rows but
    # only 15 independent units, so the honest interval is the width of a 15-item sample.
    rng = np.random.default_rng(2)
    per_question = rng.uniform(0, 1, 15)
    values = np.repeat(per_question, 40) + rng.normal(0, 0.01, 600)
    groups = np.repeat(np.arange(15), 40)
    rows, clusters = mean_ci(values), mean_ci(values, groups=groups)
    assert clusters.value == pytest.approx(rows.value)
    assert (clusters.hi - clusters.lo) > 4 * (rows.hi - rows.lo)
    few = mean_ci(per_question)
    assert (clusters.hi - clusters.lo) == pytest.approx(few.hi - few.lo, rel=0.35)
    with pytest.raises(ValueError, match="3 labels for 600 rows"):
        mean_ci(values, groups=[0, 1, 2])


def test_proportion_interval_is_never_zero_width():
    # The organism table printed "0% (0-0%)" from a percentile bootstrap of 30 zeros.
    assert (mean_ci(np.zeros(30)).lo, mean_ci(np.zeros(30)).hi) == (0.0, 0.0)
    for est in (proportion_ci(np.zeros(30)), proportion_ci(np.ones(30)), proportion_ci(np.zeros(30), groups=np.arange(30) // 3)):
        assert est.hi - est.lo > 0.05
    grouped = proportion_ci(np.zeros(30), groups=np.arange(30) // 3)  # 10 clusters: as wide as 10 observations
    assert grouped.hi == pytest.approx(proportion_ci(np.zeros(10)).hi)
    assert proportion_ci([1, 0, 1, 1]).value == 0.75


def test_wilson_interval():
    from greyglass.stats import wilson

    e = wilson(33, 1852)
    assert e.value == pytest.approx(33 / 1852) and (round(e.lo, 4), round(e.hi, 4)) == (0.0127, 0.0249)
    zero = wilson(0, 1852)
    assert zero.value == 0 == zero.lo and 0.001 < zero.hi < 0.003  # nothing seen still leaves an upper bound
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_direction_round_trip_and_score(tmp_path):
    d = Direction(torch.tensor([1.0, -2.0, 0.5]), "blocks.3.hook_resid_post", "logistic", bias=0.25,
                  mean=torch.tensor([1.0, 0.0, 0.0]), scale=torch.tensor([2.0, 1.0, 1.0]), metadata={"layer": 3})
    x = torch.tensor([[3.0, 1.0, 2.0]])
    assert d.score(x).item() == pytest.approx((2 / 2) * 1 - 2 + 1 + 0.25)
    step = 1e-3 * d.model_space()  # moving along model_space raises the score by |model_space|^2 per unit
    assert (d.score(x + step) - d.score(x)).item() == pytest.approx(1e-3 * d.model_space().norm().item() ** 2, rel=1e-3)
    loaded = Direction.load(d.save(tmp_path / "dir"))
    assert torch.equal(loaded.vector, d.vector) and loaded.metadata == {"layer": 3} and loaded.bias == 0.25
    assert loaded.score(x).item() == pytest.approx(d.score(x).item())
    with pytest.raises(GreyglassError, match="d_model 3, but the model has 576"):
        loaded.check_model(576)
    with pytest.raises(GreyglassError, match="not a saved direction"):
        Direction.load(tmp_path)


def test_a_mean_probability_interval_is_the_bootstrap_but_never_zero_width():
    from greyglass.stats import mean_ci, mean_probability_ci

    spread = np.linspace(0.3, 0.7, 50)
    assert mean_probability_ci(spread) == mean_ci(spread)  # not the (much wider) worst-case Wilson interval
    saturated = mean_probability_ci(np.ones(50))  # every item at 1 under strong steering
    assert saturated.value == 1 and 0.9 < saturated.lo < 1 and saturated.hi == 1


def test_a_bootstrap_resamples_the_same_rows_of_every_array():
    from greyglass.stats import bootstrap

    # a metric that is exactly 0 whenever its two arrays stay paired row by row
    x = np.arange(50.0)
    for groups in (None, np.repeat(np.arange(25), 2)):
        est = bootstrap(lambda a, b: float(np.abs(a - b).max()), x, x.copy(), groups=groups, n=50)
        assert (est.value, est.lo, est.hi) == (0.0, 0.0, 0.0)


def test_auroc_and_tpr_intervals_are_never_zero_width():
    from greyglass.stats import auroc_ci, tpr_ci, wilson

    scores, labels = np.r_[np.arange(30, 54.0), np.arange(24.0)], np.r_[np.ones(24), np.zeros(24)]
    assert bootstrap(auroc, scores, labels).lo == 1.0  # every resample separates the classes perfectly
    perfect = auroc_ci(scores, labels)
    assert perfect.value == 1.0 and perfect.hi == 1.0
    assert perfect.lo == pytest.approx(wilson(24, 24).lo) and perfect.lo < 0.9
    # grouped: 8 groups of 3 per class are 8 independent units, so the interval is wider still
    grouped = auroc_ci(scores, labels, groups=np.r_[np.arange(24) // 3, 100 + np.arange(24) // 3])
    assert grouped.lo == pytest.approx(wilson(8, 8).lo)
    assert tpr_ci(scores, labels).lo == pytest.approx(wilson(24, 24).lo)
    # an interval that is not a point is the bootstrap's, untouched
    rng = np.random.default_rng(0)
    s, y = rng.normal(size=60), rng.integers(0, 2, 60)
    assert auroc_ci(s, y) == bootstrap(auroc, s, y)
    assert tpr_ci(s, y, 0.1) == bootstrap(lambda a, b: tpr_at_fpr(a, b, 0.1), s, y)
