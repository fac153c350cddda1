"""`probe transfer`: train a probe on each statement set, test it on every set (generalisation).

Marks & Tegmark's test of whether a probe found *truth* or only a feature of one dataset: a
probe trained on `cities` that still separates true from false `neg_cities` or `larger_than`
statements has found something more general. Each set is split by group; cell (row A,
column B) is the held-out accuracy on B's test statements of the probe trained on A's
training statements, so the diagonal is ordinary in-distribution accuracy. Each cell has a 95%
interval over B's test groups (a cluster bootstrap, Wilson-widened). Rows and columns are
named by the set: a built-in name or the file's stem.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..data.statements import Statement, group_keys, load_statements, set_name, split_by_group, statements_fingerprint
from ..directions import Direction
from ..models.lm import LoadedModel
from ..models.sites import layer_sites
from ..models.text_features import text_features
from ..plots import heatmap, save_svg
from ..runs import write_config, write_results
from ..stats import Estimate, auroc, proportion_ci
from .config import TransferConfig, TransferResults
from .fit import fit_probe


def transfer(lm: LoadedModel, cfg: TransferConfig, out: str | Path, progress: bool = True) -> TransferResults:
    """Fill the train-on-row, test-on-column matrix; write the run folder `out`."""
    out = Path(out)
    layer = cfg.layer if cfg.layer is not None else (2 * lm.n_layers) // 3
    site = layer_sites([layer])[0]
    sets = {set_name(spec): load_statements(spec, cfg.n_statements, cfg.seed) for spec in cfg.data}
    write_config(out, "probe_transfer", model=lm.provenance(), config=cfg, layer=layer,
                 data_fingerprints={n: statements_fingerprint(s) for n, s in sets.items()})
    parts = {name: _fit_and_hold_out(lm, cfg, statements, layer, site)
             for name, statements in tqdm(sets.items(), desc="features", unit="set", disable=not progress)}
    names = list(sets)
    cells = [[_cell(parts[a].probe, parts[b]) for b in names] for a in names]
    results = TransferResults(
        layer=layer, site=site, kind=cfg.kind, train_rows_test_columns=tuple(names), data=dict(zip(names, cfg.data)),
        accuracy=tuple(tuple(acc for acc, _ in row) for row in cells),
        auroc=tuple(tuple(roc for _, roc in row) for row in cells),
        n_test={n: len(parts[n].y) for n in names}, plot="transfer_accuracy.svg")
    save_svg(out / "transfer_accuracy.svg",
             heatmap([[a.value for a in row] for row in results.accuracy], names, names, f"{cfg.kind} probe at layer {layer}: held-out accuracy",
                     x_label="tested on", y_label="trained on", v_range=(0.0, 1.0)))
    write_results(out, results)
    return results


class HeldOut(NamedTuple):
    """A set's probe (fit on its training groups) and its held-out features, labels and groups."""

    probe: Direction
    x: Tensor
    y: Tensor
    groups: list[str]


def _fit_and_hold_out(lm: LoadedModel, cfg: TransferConfig, statements: list[Statement], layer: int,
                      site: str) -> HeldOut:
    x = text_features(lm, [s.text for s in statements], [layer], cfg.position, cfg.batch_size)[:, 0]
    y = torch.tensor([s.label for s in statements])
    groups = group_keys(statements)
    train, test = split_by_group(statements, cfg.test_fraction, cfg.seed)
    probe = fit_probe(cfg.kind, x[train], y[train], site, [groups[i] for i in train], cfg.seed)
    return HeldOut(probe, x[test], y[test], [groups[i] for i in test])


def _cell(probe: Direction, test: HeldOut) -> tuple[Estimate, float]:
    """One matrix cell: accuracy (with its 95% interval over the test set's groups) and AUROC."""
    scores = probe.score(test.x)
    correct = ((scores > 0).long() == test.y).numpy()
    return proportion_ci(correct, test.groups), auroc(scores.numpy(), test.y.numpy())

