"""`probe transfer`: train a probe on each statement set, test it on every set (generalisation).

Marks & Tegmark's test of whether a probe found *truth* or only a feature of one dataset: a
probe trained on `cities` that still separates true from false `neg_cities` or `larger_than`
statements has found something more general. Each set is split by group; cell (row A,
column B) is the held-out accuracy on B's test statements of the probe trained on A's
training statements, so the diagonal is ordinary in-distribution accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..config import check_choice, check_positive
from ..data.statements import load_statements, split_by_group, statements_fingerprint
from ..errors import GreyglassError
from ..models import LoadedModel
from ..plots import heatmap, save_svg
from ..runs import write_config, write_results
from ..stats import auroc
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


def transfer(lm: LoadedModel, cfg: TransferConfig, out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Fill the train-on-row, test-on-column matrix; write the run folder `out`."""
    out = Path(out)
    layer = cfg.layer if cfg.layer is not None else (2 * lm.n_layers) // 3
    site = layer_sites([layer])[0]
    sets = {name: load_statements(name, cfg.n_statements, cfg.seed) for name in cfg.data}
    write_config(out, "probe_transfer", model=lm.provenance(), transfer=cfg, layer=layer,
                 data_fingerprints={n: statements_fingerprint(s) for n, s in sets.items()})
    parts = {}
    for name, statements in tqdm(sets.items(), desc="features", unit="set", disable=not progress):
        x = text_features(lm, [s.text for s in statements], [layer], cfg.position, cfg.batch_size)[:, 0]
        y = torch.tensor([s.label for s in statements])
        train, test = split_by_group(statements, cfg.test_fraction, cfg.seed)
        probe = fit_probe(cfg.kind, x[train], y[train], site, [statements[i].group for i in train], cfg.seed)
        parts[name] = (probe, x[test], y[test])
    names = list(sets)
    acc = [[float(((parts[a][0].score(parts[b][1]) > 0).long() == parts[b][2]).float().mean()) for b in names]
           for a in names]
    roc = [[auroc(parts[a][0].score(parts[b][1]).numpy(), parts[b][2].numpy()) for b in names] for a in names]
    results = {"layer": layer, "site": site, "kind": cfg.kind, "train_rows_test_columns": names,
               "accuracy": acc, "auroc": roc, "n_test": {n: len(parts[n][2]) for n in names},
               "plot": "transfer_accuracy.svg"}
    save_svg(out / "transfer_accuracy.svg",
             heatmap(acc, names, names, f"{cfg.kind} probe at layer {layer}: held-out accuracy",
                     x_label="tested on", y_label="trained on", v_range=(0.0, 1.0)))
    write_results(out, results)
    return results


def describe(results: dict[str, Any]) -> str:
    names, acc = results["train_rows_test_columns"], results["accuracy"]
    lines = [f"Held-out accuracy at layer {results['layer']} (rows: trained on; columns: tested on):",
             " " * 18 + "".join(f"{n[:14]:>15}" for n in names)]
    lines += [f"{a[:17]:<18}" + "".join(f"{v:>15.0%}" for v in row) for a, row in zip(names, acc)]
    return "\n".join(lines)
