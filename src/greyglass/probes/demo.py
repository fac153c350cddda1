"""The demo's probe step: a short truth-probe sweep on the default model, headline in plain words."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .sweep import SweepConfig, describe, sweep

if TYPE_CHECKING:
    from ..demo import DemoContext


def step_probe_sweep(ctx: DemoContext) -> None:
    """Fit a logistic truth probe at every third layer on the 194 `cities` statements."""
    out = ctx.root / "probe_sweep"
    cfg = SweepConfig(data="cities", layer_step=3, kind="logistic")
    results = sweep(ctx.lm, cfg, out)
    ctx.outputs["probe_sweep_dir"] = out
    print(f"\n[probe sweep] {describe(results)}")
    print(f"  per-layer plot: {out / results['plot']}; the best probe is saved in {out / results['best_probe']}")
