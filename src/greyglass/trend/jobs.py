"""The trend job, `greyglass trend`: one eval or red-teaming run over several models, the metrics against the model."""

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
    help="one eval or red-teaming run over several models: the metrics against the model, with intervals",
    description="Run one job (--job eval: sycophancy, advanced-ai-risk or behaviour; eval-cot; eval-pressure; "
    "redteam), with that job's own flags, on every --model, each in its own sub-run folder; order the models by "
    "parameter count (or as given), plot the job's metrics with their 95% intervals, and call a trend only where "
    "the change from the first model to the last excludes zero in every metric (paired over the same items; a red "
    "team's cases differ by model, so there unpaired). An inverse trend: the later models show more of the "
    "behaviour.")

JOBS = (TREND,)
