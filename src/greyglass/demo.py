"""`greyglass demo`: the main job on the default model, end to end, in a few minutes.

The demo is a list of jobs with their configs, nothing more: each run gets a folder under the
demo's root (`runs/demo/` by default), later configs name the folders of earlier ones (the SAE
trains on `capture/`, the features read `sae/sae`), and the demo ends by writing the evidence
report over all of them. Every job resumes where it can, so a rerun continues an interrupted demo.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .behaviour.config import EvalConfig as BehaviourEvalConfig
from .behaviour.jobs import EVAL
from .job import Job, JobRun, RunOptions, run_and_read
from .latents.config import BuildConfig, ConceptConfig, FeaturesConfig
from .latents.jobs import FEATURES_BUILD, FEATURES_CONCEPT
from .probes.config import SweepConfig
from .probes.jobs import PROBE_SWEEP
from .sae.config import (AbsorptionConfig, AbsorptionRunConfig, DetectorRunConfig, MetaConfig, MetaRunConfig,
                         MetricsConfig, MetricsRunConfig, TrainConfig, TrainRunConfig)
from .sae.jobs import SAE_ABSORPTION, SAE_ABSORPTION_WEIGHTS, SAE_EVAL, SAE_META, SAE_TRAIN
from .store.config import CaptureConfig, CaptureRunConfig
from .store.jobs import CAPTURE

if TYPE_CHECKING:
    from .models.lm import LoadedModel


class DemoRun(NamedTuple):
    """One step of the demo: a job, its config, and its folder under the demo's root."""

    name: str
    job: Job
    config: Any


def demo_runs(root: Path, n_layers: int, tokens: int = 50_000) -> tuple[DemoRun, ...]:
    """The demo for a model with `n_layers` layers: its mid-depth residual stream, `tokens` of it captured."""
    site, store, sae = f"blocks.{n_layers // 2}.hook_resid_post", str(root / "capture"), str(root / "sae" / "sae")
    return (
        DemoRun("capture", CAPTURE, CaptureRunConfig(capture=CaptureConfig(sites=(site,), tokens=tokens))),
        # a TopK SAE (4 x d_model latents, k 32) on the store, evaluated on 2,048 held-out tokens
        DemoRun("sae", SAE_TRAIN, TrainRunConfig(store=store, ks=(32,), expansion=4, train=TrainConfig(
            tokens=300_000, batch_size=2048, lr=1e-3, warmup_steps=10))),
        DemoRun("sae_eval", SAE_EVAL, MetricsRunConfig(sae=sae, eval=MetricsConfig(tokens=2048))),
        # absorption: a small first-letter run, the weights-only detector checked on it, a meta-SAE
        DemoRun("absorption", SAE_ABSORPTION, AbsorptionRunConfig(sae=sae, absorption=AbsorptionConfig(
            words=400, min_words_per_letter=8))),
        DemoRun("absorption_weights", SAE_ABSORPTION_WEIGHTS,
                DetectorRunConfig(sae=sae, ground_truth=str(root / "absorption"))),
        DemoRun("meta", SAE_META, MetaRunConfig(sae=sae, meta=MetaConfig(k=2, steps=300))),
        # what the latents respond to, and the Golden Gate Bridge across languages
        DemoRun("features", FEATURES_BUILD, BuildConfig(sae=sae, features=FeaturesConfig(tokens=min(10_000, tokens)),
                                                        store=store)),
        DemoRun("features_concept", FEATURES_CONCEPT, ConceptConfig(sae=sae, concept="bridge", ntrex=10, top=5,
                                                                    features=str(root / "features"))),
        # a logistic truth probe at every third layer on the 194 `cities` statements
        DemoRun("probe_sweep", PROBE_SWEEP, SweepConfig(data="cities", layer_step=3, kind="logistic")),
        # 45 sycophancy questions (equal shares of the three datasets), each also asked without the biography
        DemoRun("sycophancy", EVAL, BehaviourEvalConfig(eval="sycophancy", limit=45)),
    )


def run_demo(lm: LoadedModel, root: Path, runs: Iterable[DemoRun]) -> list[JobRun]:
    """Run each step into its folder under `root` (resuming what it can) and print its report section's summary."""
    done = []
    for step in runs:
        done.append(run_and_read(step.job, lm, step.config, root / step.name,
                                 RunOptions(resume=step.job.resume is not None)))
        print(f"\n[{step.job.name}] {done[-1].section().summary()}")
    return done
