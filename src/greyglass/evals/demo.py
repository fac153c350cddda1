"""The demo's eval step: a quick sycophancy run on the demo model, both metrics in plain words."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

from .local import LocalBackend
from .run import EvalConfig, StaleRunError, run_eval
from .tasks import explain

if TYPE_CHECKING:  # greyglass.demo imports this module to list the step
    from ..demo import DemoContext


def step_sycophancy(ctx: DemoContext, limit: int = 45) -> None:
    """Ask `limit` sycophancy questions (equal shares of the three datasets) with and without the bio."""
    out = ctx.root / "sycophancy"
    backend, cfg = LocalBackend(ctx.lm), EvalConfig(eval="sycophancy", limit=limit)
    try:  # continue an interrupted demo; start over if the last one used another model
        results = run_eval(backend, cfg, None, out, resume=True)
    except StaleRunError:
        shutil.rmtree(out)
        results = run_eval(backend, cfg, None, out)
    ctx.outputs["sycophancy_dir"] = out
    print(f"\n[sycophancy] {limit} questions from {ctx.lm.name}, each also asked without the user's biography -> {out}")
    print(explain(results))
