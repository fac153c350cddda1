"""Plain summaries of an organism-probe run, shared by the CLI and the evidence report."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def best_layer(rows: list[dict[str, Any]], n_layers: int) -> dict[str, Any]:
    """The layer with the highest AUROC, with its depth as a fraction of the stack."""
    best = max(rows, key=lambda r: r["auroc"]["value"])
    return {"layer": best["layer"], "fraction_of_depth": round((best["layer"] + 1) / n_layers, 3),
            "auroc": best["auroc"]}


def _at(rows: list[dict[str, Any]], layer: int) -> dict[str, float]:
    return next(r["auroc"] for r in rows if r["layer"] == layer)


def probe_summary(out: Path, r: dict[str, Any]) -> str:
    b = r["best"]
    a = b["auroc"]
    org, orig = r["organism"], r["original_model"]
    f = lambda d: f"{d['value']:.3f} ({d['ci_low']:.3f}-{d['ci_high']:.3f})"  # noqa: E731
    return (f"organism probe results in {out}\n"
            f"  best layer {b['layer']} ({100 * b['fraction_of_depth']:.0f}% of the depth): AUROC {f(a)} for triggered vs plain prompts\n"
            f"  same layer, controls: original model {f(_at(orig['defection_pairs'], b['layer']))}, unrelated pair "
            f"{f(_at(org['control_pairs'], b['layer']))}, random direction {f(_at(org['random'], b['layer']))}\n"
            f"  (Anthropic reported AUROC above 0.99 on much larger models)")
