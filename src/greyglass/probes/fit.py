"""Probe kinds: logistic regression, mass-mean, and PCA of paired differences.

Each takes features `x [n, d]` and labels `y [n]` (1 true, 0 false) and returns a
`Direction` whose `score(x) > 0` predicts "true":

- `logistic`: L2-regularised logistic regression on standardised features (scikit-learn's
  L-BFGS), the penalty chosen by 5-fold cross-validated log-loss with folds split by group.
- `mass_mean`: the difference of class means, thresholded at their midpoint (Marks &
  Tegmark); with `iid=True` premultiplied by the inverse (shrunk) within-class covariance,
  their "IID" variant, better in distribution, worse out of it.
- `pca`: the first principal component of paired differences (true minus false statement of
  the same group), each difference's sign flipped at random so the component captures the
  axis along which pairs differ (Zou et al., repeng); oriented so true scores higher and
  thresholded at the midpoint of the class means. Needs groups holding one true and one false.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..directions import Direction
from ..errors import GreyglassError
from .config import PROBE_KINDS



def fit_probe(kind: str, x: Tensor, y: Tensor, site: str, groups: Sequence[str] | None = None,
              seed: int = 0) -> Direction:
    """Fit a probe of `kind` on `x [n, d]`, `y [n]`; see the module docstring."""
    x, y = x.float(), y.long()
    if len(set(y.tolist())) < 2:
        raise GreyglassError("probe training data has only one label; it needs true and false statements")
    if kind == "logistic":
        return _logistic(x, y, site, groups, seed)
    if kind in ("mass_mean", "mass_mean_iid"):
        return _mass_mean(x, y, site, iid=kind == "mass_mean_iid")
    if kind == "pca":
        return _pca_of_differences(x, y, site, groups, seed)
    raise GreyglassError(f"unknown probe kind {kind!r}; choose one of {', '.join(PROBE_KINDS)}")


def _logistic(x: Tensor, y: Tensor, site: str, groups: Sequence[str] | None, seed: int) -> Direction:
    mean, scale = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / scale  # [n, d]
    folds = _group_folds(len(x), groups, k=5, seed=seed)
    losses = dict.fromkeys(L2_GRID, 0.0)
    for tr, va in folds:
        for c in L2_GRID:
            losses[c] += _log_loss(_train_logistic(z[tr], y[tr], c), z[va], y[va])
    c = min(losses, key=lambda k: (losses[k], -k))  # ties go to the stronger penalty
    w, b = _train_logistic(z, y, c)
    return Direction(w.float(), site, "logistic", bias=float(b), mean=mean.float(), scale=scale.float(),
                     metadata={"l2": c})


L2_GRID = (10.0, 1.0, 0.1, 0.01)
"""Penalties tried for the logistic probe: loss = mean log-loss + l2 * |w|^2 / 2, on standardised features."""


def _train_logistic(z: Tensor, y: Tensor, l2: float) -> tuple[Tensor, Tensor]:
    """L-BFGS (scikit-learn) on mean log-loss + l2 |w|^2 / 2, bias unpenalised -> (w [d], b [])."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=1 / (l2 * len(z)), max_iter=2000, tol=1e-6).fit(z.numpy(), y.numpy())
    return torch.from_numpy(clf.coef_[0]).float(), torch.tensor(float(clf.intercept_[0]))


def _log_loss(wb: tuple[Tensor, Tensor], z: Tensor, y: Tensor) -> float:
    return float(F.binary_cross_entropy_with_logits(z @ wb[0] + wb[1], y.to(z.dtype), reduction="sum"))


def _group_folds(n: int, groups: Sequence[str] | None, k: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """k (train, validation) index splits that keep each group on one side."""
    keys = list(dict.fromkeys(groups or [str(i) for i in range(n)]))
    if len(keys) < 2:  # one fold would train on nothing
        raise GreyglassError("the logistic probe's cross-validation needs training statements from at least two "
                             "groups; give true/false pairs distinct 'group' values, or leave 'group' empty")
    np.random.default_rng(seed).shuffle(keys)
    fold_of = {g: i % k for i, g in enumerate(keys)}
    labels = [fold_of[g] for g in (groups or [str(i) for i in range(n)])]
    return [([i for i in range(n) if labels[i] != f], [i for i in range(n) if labels[i] == f])
            for f in range(min(k, len(keys)))]


def _mass_mean(x: Tensor, y: Tensor, site: str, iid: bool) -> Direction:
    mu_true, mu_false = x[y == 1].mean(0), x[y == 0].mean(0)
    theta = mu_true - mu_false  # [d]
    if iid:
        centred = torch.cat([x[y == 1] - mu_true, x[y == 0] - mu_false])
        cov = centred.T @ centred / len(x)
        shrink = 0.1 * cov.diagonal().mean()  # ridge so the inverse exists when n < d
        theta = torch.linalg.solve(cov + shrink * torch.eye(len(cov), dtype=cov.dtype), theta)
    midpoint = (mu_true + mu_false) / 2
    return Direction(theta.float(), site, "mass_mean_iid" if iid else "mass_mean", mean=midpoint.float())


def _pca_of_differences(x: Tensor, y: Tensor, site: str, groups: Sequence[str] | None, seed: int) -> Direction:
    diffs = paired_differences(x, y, groups)  # [pairs, d]
    signs = torch.from_numpy(np.random.default_rng(seed).choice([-1.0, 1.0], len(diffs))).to(diffs.dtype)
    _, _, vt = torch.linalg.svd(diffs * signs[:, None], full_matrices=False)
    direction = vt[0]
    mu_true, mu_false = x[y == 1].mean(0), x[y == 0].mean(0)
    if (mu_true - mu_false) @ direction < 0:
        direction = -direction
    return Direction(direction.float(), site, "pca", mean=((mu_true + mu_false) / 2).float())


def paired_differences(x: Tensor, y: Tensor, groups: Sequence[str] | None) -> Tensor:
    """x[true] - x[false] for every group holding exactly one true and one false row -> [pairs, d]."""
    if groups is None:
        raise GreyglassError("the pca probe needs paired statements: give each true/false pair the same 'group'")
    rows: dict[str, dict[int, int]] = {}
    for i, (g, label) in enumerate(zip(groups, y.tolist())):
        rows.setdefault(g, {})[label] = i
    pairs = [(r[1], r[0]) for g, r in rows.items() if g and len(r) == 2]
    if len(pairs) < 2:
        raise GreyglassError("the pca probe needs at least two groups with one true and one false statement")
    t, f = zip(*pairs)
    return x[list(t)] - x[list(f)]
