"""The SAE jobs: `greyglass sae train|eval|calibrate|absorption|absorption-weights|meta|freq-experiment|sparse-probing|compare`.

Every job but freq-experiment and compare reads an SAE folder or a store that names its model, so it takes
--model/--dtype/--device in its own Config (`ModelChoice`, default: that model) and loads the model
itself (`needs_model=False`); given a model (the demo) it uses that one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..job import Job, RunOptions
from .config import (AbsorptionRunConfig, CalibrateRunConfig, CompareConfig, DetectorRunConfig,
                     FreqExperimentConfig, MetaRunConfig, MetricsRunConfig, SparseProbingRunConfig, TrainRunConfig)
from .report import (absorption_section, calibrate_section, compare_section, detector_section, eval_section,
                     freq_experiment_section, meta_section, sparse_probing_section, train_section)
from .results import (AbsorptionResults, CalibrateResults, CompareResults, DetectorResults, FreqResults, MetaResults,
                      MetricsResults, SparseProbingResults, TrainResults)

if TYPE_CHECKING:
    from ..models.lm import LoadedModel


def _train(lm: LoadedModel | None, cfg: TrainRunConfig, out: Path, opts: RunOptions) -> TrainResults:
    from .train import run_train

    return run_train(lm, cfg, out, resume=opts.resume, progress=opts.progress)


def _eval(lm: LoadedModel | None, cfg: MetricsRunConfig, out: Path, opts: RunOptions) -> MetricsResults:
    from .metrics import run_eval

    return run_eval(lm, cfg, out, opts.progress)


def _calibrate(lm: LoadedModel | None, cfg: CalibrateRunConfig, out: Path, opts: RunOptions) -> CalibrateResults:
    from .calibrate import run_calibrate

    return run_calibrate(lm, cfg, out)


def _absorption(lm: LoadedModel | None, cfg: AbsorptionRunConfig, out: Path, opts: RunOptions) -> AbsorptionResults:
    from .absorption import run_absorption

    return run_absorption(lm, cfg, out, opts.progress)


def _compare(lm: LoadedModel, cfg: CompareConfig, out: Path, opts: RunOptions) -> CompareResults:
    from .compare import run_compare

    return run_compare(lm, cfg, out, opts.progress, opts.resume)


def _sparse_probing(lm: LoadedModel | None, cfg: SparseProbingRunConfig, out: Path,
                    opts: RunOptions) -> SparseProbingResults:
    from .sparse_probing import run_sparse_probing

    return run_sparse_probing(lm, cfg, out, opts.progress)


def _detector(lm: LoadedModel | None, cfg: DetectorRunConfig, out: Path, opts: RunOptions) -> DetectorResults:
    from .absorption_detector import run_detector

    return run_detector(cfg, out, opts.progress)


def _meta(lm: LoadedModel | None, cfg: MetaRunConfig, out: Path, opts: RunOptions) -> MetaResults:
    from .meta import run_meta

    return run_meta(lm, cfg, out, opts.progress)


def _freq_experiment(lm: LoadedModel, cfg: FreqExperimentConfig, out: Path, opts: RunOptions) -> FreqResults:
    from .freq_experiment import run_experiment

    return run_experiment(lm, cfg, out, opts.progress, opts.resume)


SAE_TRAIN = Job(
    name="sae_train", command=("sae", "train"), config=TrainRunConfig, results=TrainResults, run=_train,
    section=train_section, needs_model=False, resume="continue from the checkpoint in --out",
    help="train SAEs from an activation store or on the fly",
    description="Train one SAE per (--site, --k) pair, all from one pass over the data: from --store, or with no "
    "store from --model over --corpus. Writes one SAE folder per SAE (SAELens reads them) in the run folder.")
SAE_EVAL = Job(
    name="sae_eval", command=("sae", "eval"), config=MetricsRunConfig, results=MetricsResults, run=_eval,
    section=eval_section, needs_model=False,
    help="evaluate an SAE on held-out text (reconstruction and downstream loss)",
    description="Splice the SAE into the model on text provably held out from its training text (the heldout split "
    "of the corpus it trained on; --unverified-text to evaluate other text anyway): loss increase and KL with "
    "intervals, CE loss recovered against mean and zero ablation, explained variance, L0, dead and dense latents.")
SAE_CALIBRATE = Job(
    name="sae_calibrate", command=("sae", "calibrate"), config=CalibrateRunConfig, results=CalibrateResults,
    run=_calibrate, section=calibrate_section, needs_model=False,
    help="shift a BatchTopK, Matryoshka or JumpReLU SAE's thresholds so it fires a chosen L0",
    description="Add one shift to every threshold so the mean L0 on --tokens rows of training text is --l0 (default: "
    "the SAE's own k or target_l0); the learned running-average threshold undershoots in short runs. Writes the "
    "calibrated SAE (a JumpReLU folder SAELens reads) to the run folder as <name>-calibrated.")
SAE_ABSORPTION = Job(
    name="sae_absorption", command=("sae", "absorption"), config=AbsorptionRunConfig, results=AbsorptionResults,
    run=_absorption, section=absorption_section, needs_model=False,
    help="measure feature absorption with the first-letter benchmark",
    description="Chanin et al.'s first-letter benchmark: probes per letter on the SAE's site, main latents by "
    "k-sparse probing, absorption rate per letter and overall.")
SAE_ABSORPTION_WEIGHTS = Job(
    name="sae_absorption_weights", command=("sae", "absorption-weights"), config=DetectorRunConfig,
    results=DetectorResults, run=_detector, section=detector_section, needs_model=False,
    help="find absorbing (parent, child) latent pairs from the weights alone",
    description="Score every (parent, child) pair from W_enc and W_dec (and the saved firing rates), in blocks; "
    "optionally validate against a first-letter run.")
SAE_META = Job(
    name="sae_meta", command=("sae", "meta"), config=MetaRunConfig, results=MetaResults, run=_meta,
    section=meta_section, needs_model=False, help="train a meta-SAE on an SAE's decoder rows",
    description="A BatchTopK SAE on the decoder rows: variance explained, members of each meta-latent with "
    "logit-lens tokens, latents that compose several meta-latents.")
SAE_FREQ_EXPERIMENT = Job(
    name="sae_freq_experiment", command=("sae", "freq-experiment"), config=FreqExperimentConfig, results=FreqResults,
    run=_freq_experiment, section=freq_experiment_section, resume="continue the training from the checkpoint in --out",
    help="TopK and JumpReLU with and without frequency-aware sparsity",
    description="Train TopK, JumpReLU and their frequency-aware versions at matched L0 in one pass over the data; "
    "tabulate explained variance, CE loss recovered, dead and dense latents and first-letter absorption.")
SAE_SPARSE_PROBING = Job(
    name="sae_sparse_probing", command=("sae", "sparse-probing"), config=SparseProbingRunConfig,
    results=SparseProbingResults, run=_sparse_probing, section=sparse_probing_section, needs_model=False,
    help="sparse probing: the SAE's top-k latents against the raw activations on binary tasks",
    description="SAEBench-style sparse probing on the bundled binary tasks (first letter a vowel, true city "
    "statement, English or French sentence, answer agreeing with the user's view): test accuracy of a probe on "
    "the k latents whose class means differ most (k = 1, 2, 5, 20) against a probe on the raw activations.")
SAE_COMPARE = Job(
    name="sae_compare", command=("sae", "compare"), config=CompareConfig, results=CompareResults, run=_compare,
    section=compare_section, resume="continue the training from the checkpoint in --out",
    help="compare SAE architectures trained on the same activations (absorption showdown)",
    description="Train TopK, BatchTopK, Matryoshka, JumpReLU and frequency-aware variants at matched L0 and widths "
    "in one pass over the data; tabulate the loss increase, CE loss recovered, explained variance, dead and dense "
    "latents, first-letter absorption (fraction, full, split features) and sparse probing; a frontier plot and a "
    "bar chart per metric.")

JOBS = (SAE_TRAIN, SAE_EVAL, SAE_CALIBRATE, SAE_ABSORPTION, SAE_ABSORPTION_WEIGHTS, SAE_META, SAE_FREQ_EXPERIMENT, SAE_SPARSE_PROBING,
        SAE_COMPARE)
GROUPS = {"sae": "train and evaluate sparse autoencoders; feature absorption and meta-SAEs"}
