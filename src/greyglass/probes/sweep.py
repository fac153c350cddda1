"""`probe sweep`: a truth probe at every layer, measured on held-out statements with 95% CIs.

The statements are split by group (both halves of a true/false pair on the same side) into
train and test. For each layer a probe is fit on the training statements and scored on the
test statements: accuracy (score > 0), AUROC, and the true-positive rate at 1% false-positive
rate, each with a 95% interval that resamples whole groups (the true and false version of one
fact are not independent evidence; an ungrouped statement is its own group). The best layer is chosen on a
validation split carved out of the training statements (so the reported test accuracy of the
best layer is not inflated by having picked it on the test set).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..data.statements import Statement, group_keys, load_statements, split_by_group, statements_fingerprint
from ..directions import Direction
from ..models.lm import LoadedModel
from ..models.sites import layer_sites
from ..models.text_features import text_features
from ..plots import Series, line_chart, save_svg
from ..runs import write_config, write_results
from ..stats import Estimate, auroc_ci, proportion_ci, tpr_ci
from .config import LayerScore, SweepConfig, SweepResults
from .fit import fit_probe


class Held(NamedTuple):
    """A probe's held-out metrics, each with a 95% interval."""

    accuracy: Estimate
    auroc: Estimate
    tpr_at_1pct_fpr: Estimate


def held_out_metrics(scores: Tensor, labels: Tensor, n_bootstrap: int = 1000, seed: int = 0,
                     groups: Sequence[str] | None = None) -> Held:
    """Accuracy, AUROC and TPR at 1% FPR (score > 0) with 95% intervals, none zero-width;
    with `groups` (one per row) the intervals come from a cluster bootstrap over whole groups."""
    s, y = scores.double().numpy(), labels.numpy()
    acc = proportion_ci((s > 0) == y, groups, n=n_bootstrap, seed=seed)
    roc = auroc_ci(s, y, groups=groups, n=n_bootstrap, seed=seed)
    tpr = tpr_ci(s, y, 0.01, groups=groups, n=n_bootstrap, seed=seed)
    return Held(acc, roc, tpr)


def accuracy(direction: Direction, x: Tensor, y: Tensor) -> float:
    return float(((direction.score(x) > 0).long() == y).float().mean())


def sweep(lm: LoadedModel, cfg: SweepConfig, out: str | Path, progress: bool = True) -> SweepResults:
    """Fit and test a probe at each layer; write the run folder `out`; return its results."""
    out = Path(out)
    statements = load_statements(cfg.data, cfg.n_statements, cfg.seed)
    layers = cfg.layer_list(lm.n_layers)
    train, test = split_by_group(statements, cfg.test_fraction, cfg.seed)
    fit_idx, val_idx = _validation_split(statements, train, cfg.seed)
    write_config(out, "probe_sweep", model=lm.provenance(), config=cfg, layers=layers,
                 data_fingerprint=statements_fingerprint(statements))
    x = text_features(lm, [s.text for s in statements], layers, cfg.position, cfg.batch_size, progress)
    y = torch.tensor([s.label for s in statements])
    groups = group_keys(statements)
    rows = []
    for j, layer in enumerate(tqdm(layers, desc="probes", unit="layer", disable=not progress)):
        site = layer_sites([layer])[0]
        val_acc = accuracy(_fit(cfg, x[:, j], y, groups, fit_idx, site), x[val_idx, j], y[val_idx])
        probe = _fit(cfg, x[:, j], y, groups, train, site)
        held = held_out_metrics(probe.score(x[test, j]), y[test], cfg.n_bootstrap, cfg.seed,
                                [groups[i] for i in test])
        probe.metadata.update(_provenance(lm, cfg, statements, layer, held))
        probe.save(out / "probes" / site)
        rows.append(LayerScore(layer, site, val_acc, accuracy(probe, x[train, j], y[train]), *held))
    best = max(rows, key=lambda r: (r.validation_accuracy, -r.layer))
    results = SweepResults(
        data=cfg.data, kind=cfg.kind, n_statements=len(statements), n_train=len(train), n_test=len(test),
        true_fraction=float(y.float().mean()), layers=tuple(rows), best_layer=best.layer, best_site=best.site,
        best_depth_fraction=best.layer / lm.n_layers, best_probe=f"probes/{best.site}", plot="accuracy_by_layer.svg")
    save_svg(out / "accuracy_by_layer.svg", sweep_plot(rows, f"{cfg.kind} probe on {cfg.data} ({lm.name})"))
    write_results(out, results)
    return results


def _validation_split(statements: list[Statement], train: list[int], seed: int) -> tuple[list[int], list[int]]:
    """Split the training indices into (fit, validation) by group, for choosing the best layer."""
    sub = [statements[i] for i in train]
    fit, val = split_by_group(sub, 0.2, seed + 1)
    return [train[i] for i in fit], [train[i] for i in val]


def _fit(cfg: SweepConfig, x: Tensor, y: Tensor, groups: list[str], idx: list[int], site: str) -> Direction:
    return fit_probe(cfg.kind, x[idx], y[idx], site, [groups[i] for i in idx], cfg.seed)


def _provenance(lm: LoadedModel, cfg: SweepConfig, statements: list[Statement], layer: int, held: Held) -> dict:
    return {"model": lm.name, "model_sha256": lm.sha256, "layer": layer, "position": cfg.position,
            "data": cfg.data, "data_fingerprint": statements_fingerprint(statements), "seed": cfg.seed,
            "test_accuracy": held.accuracy.value, "test_auroc": held.auroc.value}


def sweep_plot(rows: list[LayerScore], title: str) -> str:
    layers = [r.layer for r in rows]

    def series(label: str, key: str) -> Series:
        ests = [getattr(r, key) for r in rows]
        return Series(label, layers, [e.value for e in ests], [e.lo for e in ests], [e.hi for e in ests])

    return line_chart([series("accuracy", "accuracy"), series("AUROC", "auroc")], title, "layer",
                      "held-out score (95% CI)", y_range=(0.0, 1.0))

