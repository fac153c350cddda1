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

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..config import check_choice, check_positive
from ..data.statements import Statement, group_keys, load_statements, set_name, split_by_group, statements_fingerprint
from ..directions import Direction
from ..errors import GreyglassError
from ..models import LoadedModel
from ..plots import heatmap, save_svg
from ..runs import write_config, write_results
from ..stats import auroc, proportion_ci
from .features import Position, layer_sites, text_features
from .fit import PROBE_KINDS, ProbeKind, fit_probe


@dataclass(frozen=True)
class TransferConfig:
    data: tuple[str, ...] = ("cities", "neg_cities", "larger_than", "neg_larger_than")
    """Statement sets (built-in names or files), repeatable; each is trained on and tested on."""
    layer: int | None = None
    """Layer to probe; default two thirds of the way up."""
    kind: ProbeKind = "mass_mean"
    """Probe kind: logistic, mass_mean, mass_mean_iid, or pca."""
    position: Position = "last"
    """Feature position: the statement's last token, or the mean over its tokens."""
    n_statements: int | None = 300
    """Statements sampled from each set (whole pairs); all when unset."""
    test_fraction: float = 0.3
    """Fraction of each set's groups held out for testing."""
    batch_size: int = 32
    """Statements per forward pass."""
    seed: int = 0
    """Seed for sampling and splits."""

    def __post_init__(self) -> None:
        check_choice("TransferConfig", "kind", self.kind, PROBE_KINDS)
        check_choice("TransferConfig", "position", self.position, ("last", "mean"))
        for name in ("n_statements", "batch_size"):
            check_positive("TransferConfig", name, getattr(self, name))
        if len(self.data) < 2:
            raise GreyglassError("TransferConfig.data needs at least two statement sets (repeat --data)")
        names = [set_name(spec) for spec in self.data]
        if len(set(names)) < len(names):
            raise GreyglassError(f"TransferConfig.data: two statement sets share the name {_first_repeat(names)!r} "
                                 "(the matrix is labelled by a built-in name or a file's stem); rename one file")


def _first_repeat(names: list[str]) -> str:
    return next(n for i, n in enumerate(names) if n in names[:i])


def transfer(lm: LoadedModel, cfg: TransferConfig, out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Fill the train-on-row, test-on-column matrix; write the run folder `out`."""
    out = Path(out)
    layer = cfg.layer if cfg.layer is not None else (2 * lm.n_layers) // 3
    site = layer_sites([layer])[0]
    sets = {set_name(spec): load_statements(spec, cfg.n_statements, cfg.seed) for spec in cfg.data}
    write_config(out, "probe_transfer", model=lm.provenance(), transfer=cfg, layer=layer,
                 data_fingerprints={n: statements_fingerprint(s) for n, s in sets.items()})
    parts = {name: _fit_and_hold_out(lm, cfg, statements, layer, site)
             for name, statements in tqdm(sets.items(), desc="features", unit="set", disable=not progress)}
    names = list(sets)
    cells = [[_cell(parts[a].probe, parts[b]) for b in names] for a in names]
    results = {"layer": layer, "site": site, "kind": cfg.kind, "train_rows_test_columns": names,
               "data": dict(zip(names, cfg.data)),
               "accuracy": [[c["accuracy"]["value"] for c in row] for row in cells],
               "accuracy_ci": [[[c["accuracy"]["ci_low"], c["accuracy"]["ci_high"]] for c in row] for row in cells],
               "auroc": [[c["auroc"] for c in row] for row in cells],
               "n_test": {n: len(parts[n].y) for n in names}, "plot": "transfer_accuracy.svg"}
    save_svg(out / "transfer_accuracy.svg",
             heatmap(results["accuracy"], names, names, f"{cfg.kind} probe at layer {layer}: held-out accuracy",
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


def _cell(probe: Direction, test: HeldOut) -> dict[str, Any]:
    """One matrix cell: accuracy (with its 95% interval over the test set's groups) and AUROC."""
    scores = probe.score(test.x)
    correct = ((scores > 0).long() == test.y).numpy()
    return {"accuracy": proportion_ci(correct, test.groups).as_dict(), "auroc": auroc(scores.numpy(), test.y.numpy())}


def describe(results: dict[str, Any]) -> str:
    names, acc = results["train_rows_test_columns"], results["accuracy"]
    first = max(len("trained on"), *map(len, names)) + 2
    width = max(6, *map(len, names)) + 2
    lines = [f"Held-out accuracy at layer {results['layer']} (rows: trained on; columns: tested on):",
             f"{'trained on':<{first}}" + "".join(f"{n:>{width}}" for n in names)]
    lines += [f"{a:<{first}}" + "".join(f"{v:>{width}.0%}" for v in row) for a, row in zip(names, acc)]
    return "\n".join(lines)
