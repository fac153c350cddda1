"""The model-diffing jobs: `greyglass diff divergence|train|report|ablate`. Each loads its two models itself
(`needs_model=False`): --model-a and --model-b, or for `report` the ones the crosscoder names."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..job import Job, RunOptions
from .config import (AblateConfig, AblateResults, CrosscoderTrainConfig, CrosscoderTrainResults, DivergenceConfig, DivergenceResults,
                     LatentsConfig, LatentsResults)
from .report import ablate_section, divergence_section, latents_section, train_section

if TYPE_CHECKING:
    from ..models.lm import LoadedModel


def _divergence(lm: LoadedModel | None, cfg: DivergenceConfig, out: Path, opts: RunOptions) -> DivergenceResults:
    from .divergence import divergence

    return divergence(*cfg.models.load(), cfg, out, opts.progress)


def _train(lm: LoadedModel | None, cfg: CrosscoderTrainConfig, out: Path, opts: RunOptions) -> CrosscoderTrainResults:
    from .train import train_crosscoder

    return train_crosscoder(*cfg.models.load(), cfg, out, resume=opts.resume, progress=opts.progress)


def _report(lm: LoadedModel | None, cfg: LatentsConfig, out: Path, opts: RunOptions) -> LatentsResults:
    from .latents import run_report

    return run_report(cfg, out, opts.progress)


def _ablate(lm: LoadedModel | None, cfg: AblateConfig, out: Path, opts: RunOptions) -> AblateResults:
    from .ablate import run_ablation

    return run_ablation(cfg, out, opts.progress)


DIFF_DIVERGENCE = Job(
    name="diff_divergence", command=("diff", "divergence"), config=DivergenceConfig, results=DivergenceResults,
    run=_divergence, section=divergence_section, needs_model=False,
    help="per layer, how far model B's activations and predictions are from model A's (same tokenizer)",
    description="The cheap first look at two models with one tokenizer: per layer the norm of the residual "
    "difference relative to A's, and the per-token KL between their next-token distributions, with intervals over "
    "documents. Writes results.json and divergence_by_layer.svg.")
DIFF_TRAIN = Job(
    name="diff_train", command=("diff", "train"), config=CrosscoderTrainConfig, results=CrosscoderTrainResults,
    run=_train, section=train_section, needs_model=False, resume="continue from the checkpoint in --out",
    help="train a BatchTopK crosscoder on two models' activations at one site, on the fly",
    description="One encoder reads both models' activations over the same tokens, one decoder per model "
    "(Lindsey et al. 2024; BatchTopK as in Minder et al. 2025). Writes crosscoder/ (crosscoder.safetensors, "
    "cfg.json, training.json; docs/diff.md) and the histogram of relative decoder norms.")
DIFF_REPORT = Job(
    name="diff_latents", command=("diff", "report"), config=LatentsConfig, results=LatentsResults, run=_report,
    section=latents_section, needs_model=False,
    help="what the crosscoder's B-only (and A-only) latents do: contexts, logit lens, Latent Scaling",
    description="Sorts the latents by relative decoder norm and describes the model-specific ones on held-out "
    "text: top contexts as each model drives them, logit-lens tokens, and Minder et al.'s Latent Scaling check "
    "that tells a truly B-only latent from an artefact of the sparsity loss.")

DIFF_ABLATE = Job(
    name="diff_ablate", command=("diff", "ablate"), config=AblateConfig, results=AblateResults, run=_ablate,
    section=ablate_section, needs_model=False,
    help="does ablating the organism's B-only crosscoder latents lower its backdoor rate, vs random latents",
    description="Removes the chosen latents' decoder contribution from the organism's activations at the "
    "crosscoder's site while it answers its held-out triggered questions (model A runs alongside: the encoder reads "
    "both), and compares the backdoor rate with no ablation and with as many random latents ablated.")

JOBS = (DIFF_DIVERGENCE, DIFF_TRAIN, DIFF_REPORT, DIFF_ABLATE)
GROUPS = {"diff": "model diffing: where two models diverge, and a crosscoder of what differs"}
