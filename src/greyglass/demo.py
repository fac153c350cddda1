"""`greyglass demo`: the main job on the default model, end to end, in a few minutes.

Each step reads what earlier steps wrote into the demo's run folder (`runs/demo/` by
default) and adds its own folder there, so a later step (SAE, probes, evals) is one more
function in `STEPS`. The demo ends by writing the evidence report over everything in it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .features.config import BuildConfig, ConceptConfig, FeaturesConfig
from .features.jobs import FEATURES_BUILD, FEATURES_CONCEPT
from .evals.config import EvalConfig
from .evals.jobs import EVAL
from .job import Job, RunOptions, read_job_run
from .models.lm import LoadedModel
from .probes.config import SweepConfig
from .probes.jobs import PROBE_SWEEP
from .report.build import build_report
from .sae.demo import step_absorption, step_sae
from .store.config import CaptureConfig, CaptureRunConfig
from .store.jobs import CAPTURE


@dataclass
class DemoContext:
    """What the demo steps share: the model, the output root, and each step's outputs."""

    lm: LoadedModel
    root: Path
    tokens: int
    outputs: dict[str, Any] = field(default_factory=dict)


def step_capture(ctx: DemoContext) -> None:
    """Capture the mid-depth residual stream on a slice of the bundled corpus (train split) into `capture/`."""
    site = f"blocks.{ctx.lm.n_layers // 2}.hook_resid_post"
    run_demo_job(ctx, CAPTURE, CaptureRunConfig(capture=CaptureConfig(sites=(site,), tokens=ctx.tokens)), "capture")


def run_demo_job(ctx: DemoContext, job: Job, config: Any, name: str) -> None:
    """Run one job into the demo's folder `name` and print the summary its report section shows."""
    out = ctx.root / name
    job.run(ctx.lm, config, out, RunOptions(resume=job.resume is not None))
    print(f"\n[{job.name}] {read_job_run(job, out).section().summary()}")


def step_features(ctx: DemoContext) -> None:
    """Statistics of the demo SAE's latents on 10,000 captured tokens; the Golden Gate Bridge across languages."""
    sae, store = str(ctx.outputs["sae_dir"]), str(ctx.outputs["store"].folder)
    features = FeaturesConfig(tokens=min(10_000, ctx.tokens))
    run_demo_job(ctx, FEATURES_BUILD, BuildConfig(sae=sae, features=features, store=store), "features")
    run_demo_job(ctx, FEATURES_CONCEPT, ConceptConfig(sae=sae, concept="bridge", ntrex=10, top=5,
                                                      features=str(ctx.root / "features")), "features_concept")


def step_probe_sweep(ctx: DemoContext) -> None:
    """A logistic truth probe at every third layer on the 194 `cities` statements."""
    run_demo_job(ctx, PROBE_SWEEP, SweepConfig(data="cities", layer_step=3, kind="logistic"), "probe_sweep")


def step_sycophancy(ctx: DemoContext) -> None:
    """45 sycophancy questions (equal shares of the three datasets), each also asked without the user's biography."""
    run_demo_job(ctx, EVAL, EvalConfig(eval="sycophancy", limit=45), "sycophancy")


STEPS: list[Callable[[DemoContext], None]] = [step_capture, step_sae, step_absorption, step_features,
                                              step_probe_sweep, step_sycophancy]


def register(sub: argparse._SubParsersAction) -> None:
    from .flags import add_model_args

    p = sub.add_parser("demo", help="run the main job on the default model (a few minutes)")
    add_model_args(p)
    p.add_argument("--out", default="runs/demo", help="root folder for the demo's runs (default: runs/demo)")
    p.add_argument("--tokens", type=int, default=50_000, help="tokens to capture (default: 50000)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .flags import model_from_args

    ctx = DemoContext(lm=model_from_args(args), root=Path(args.out), tokens=args.tokens)
    for step in STEPS:
        step(ctx)
    report = build_report([ctx.root], ctx.root / "report.html", title=f"What we found inside {ctx.lm.name}")
    print(f"\ndemo finished; all outputs are under {ctx.root}/")
    print(f"evidence report: {report.resolve()}")
    return 0
