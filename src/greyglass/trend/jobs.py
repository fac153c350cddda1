"""The trend job, `greyglass trend`: one eval over several models, the metric against the model."""

from __future__ import annotations

from pathlib import Path

from ..job import Job, RunOptions
from .config import TrendConfig, TrendResults
from .report import trend_section


def _trend(lm: None, cfg: TrendConfig, out: Path, opts: RunOptions) -> TrendResults:
    from .run import run_trend

    return run_trend(cfg, out, opts.resume, opts.progress)


TREND = Job(
    name="trend", command=("trend",), config=TrendConfig, results=TrendResults, run=_trend, section=trend_section,
    needs_model=False, resume="continue an interrupted trend in --out (finished models are reused; new ones are added)",
    help="one eval over several models: the metric against the model, with paired intervals",
    description="Run `greyglass eval` (sycophancy, advanced-ai-risk or behaviour) on every --model, each in its own "
    "sub-run folder, order the models by parameter count (or as given), plot both metrics with their 95% "
    "intervals, and call a trend only where the paired change from the first model to the last excludes zero in "
    "both metrics (an inverse trend: the later models show more of the behaviour).")

JOBS = (TREND,)
