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

from .data.corpus import CorpusConfig
from .features.demo import step_features
from .evals.demo import step_sycophancy
from .job import Job, JobRun, RunOptions, read_job_run
from .models import LoadedModel
from .probes.config import SweepConfig
from .probes.jobs import PROBE_SWEEP
from .report.build import build_report
from .runs import write_config, write_results
from .sae.config import (AbsorptionConfig, AbsorptionRunConfig, DetectorRunConfig, EvalConfig, EvalRunConfig,
                         MetaConfig, MetaRunConfig, TrainConfig, TrainRunConfig)
from .sae.io import load_sae
from .sae.jobs import SAE_ABSORPTION, SAE_ABSORPTION_WEIGHTS, SAE_EVAL, SAE_META, SAE_TRAIN
from .store import ActivationStore, CaptureConfig, capture


@dataclass
class DemoContext:
    """What the demo steps share: the model, the output root, and each step's outputs."""

    lm: LoadedModel
    root: Path
    tokens: int
    outputs: dict[str, Any] = field(default_factory=dict)


def step_capture(ctx: DemoContext) -> None:
    """Capture the mid-depth residual stream on a slice of the bundled corpus."""
    site = f"blocks.{ctx.lm.n_layers // 2}.hook_resid_post"
    out = ctx.root / "capture"
    cfg = CaptureConfig(sites=(site,), tokens=ctx.tokens)
    corpus = CorpusConfig(split="train")
    capture(ctx.lm, cfg, corpus, out, resume=True)
    store = ActivationStore(out)
    write_config(out, "capture", model=ctx.lm.provenance(), capture=cfg, corpus=corpus,
                 corpus_fingerprint=store.manifest["corpus"]["fingerprint"])
    write_results(out, {"n_tokens": store.n_tokens, "sites": store.sites})
    ctx.outputs["store"] = store
    print(f"\n[capture] {store.n_tokens:,} activations of {site} from {ctx.lm.name} -> {out}")
    print(store.describe())


def run_demo_job(ctx: DemoContext, job: Job, config: Any, name: str) -> JobRun:
    """Run one job into the demo's folder `name`, print the summary its report section shows, return the run."""
    out = ctx.root / name
    job.run(ctx.lm, config, out, RunOptions(resume=job.resume is not None))
    run = read_job_run(job, out)
    print(f"\n[{job.name}] {run.section().summary()}")
    return run


def step_sae(ctx: DemoContext) -> None:
    """A TopK SAE (4 x d_model latents, k 32) on the captured store, evaluated on 2,048 held-out tokens."""
    train = TrainConfig(tokens=300_000, batch_size=2048, lr=1e-3, warmup_steps=10)
    trained = run_demo_job(ctx, SAE_TRAIN, TrainRunConfig(store=str(ctx.root / "capture"), ks=(32,), expansion=4,
                                                          train=train), "sae")
    sae_dir = trained.info.folder / trained.results.saes[0].folder
    ctx.outputs["sae_dir"] = sae_dir
    ctx.outputs["sae"] = load_sae(sae_dir)  # for the features step
    run_demo_job(ctx, SAE_EVAL, EvalRunConfig(sae=str(sae_dir), eval=EvalConfig(tokens=2048)), "sae_eval")


def step_absorption(ctx: DemoContext) -> None:
    """Feature absorption in the demo's SAE: a small first-letter run, the weights-only detector validated on it,
    and a meta-SAE on its decoder rows (about a minute)."""
    sae = str(ctx.outputs["sae_dir"])
    run_demo_job(ctx, SAE_ABSORPTION, AbsorptionRunConfig(sae=sae, absorption=AbsorptionConfig(
        words=400, min_words_per_letter=8)), "absorption")
    run_demo_job(ctx, SAE_ABSORPTION_WEIGHTS, DetectorRunConfig(sae=sae, ground_truth=str(ctx.root / "absorption")),
                 "absorption_weights")
    run_demo_job(ctx, SAE_META, MetaRunConfig(sae=sae, meta=MetaConfig(k=2, steps=300)), "meta")


def step_probe_sweep(ctx: DemoContext) -> None:
    """A logistic truth probe at every third layer on the 194 `cities` statements."""
    run_demo_job(ctx, PROBE_SWEEP, SweepConfig(data="cities", layer_step=3, kind="logistic"), "probe_sweep")


STEPS: list[Callable[[DemoContext], None]] = [step_capture, step_sae, step_absorption, step_features,
                                              step_probe_sweep, step_sycophancy]


def register(sub: argparse._SubParsersAction) -> None:
    from .cli import add_model_args

    p = sub.add_parser("demo", help="run the main job on the default model (a few minutes)")
    add_model_args(p)
    p.add_argument("--out", default="runs/demo", help="root folder for the demo's runs (default: runs/demo)")
    p.add_argument("--tokens", type=int, default=50_000, help="tokens to capture (default: 50000)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .cli import model_from_args

    ctx = DemoContext(lm=model_from_args(args), root=Path(args.out), tokens=args.tokens)
    for step in STEPS:
        step(ctx)
    report = build_report([ctx.root], ctx.root / "report.html", title=f"What we found inside {ctx.lm.name}")
    print(f"\ndemo finished; all outputs are under {ctx.root}/")
    print(f"evidence report: {report.resolve()}")
    return 0
