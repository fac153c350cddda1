"""`greyglass testbed`: run each tool that matches an organism's behaviour on the organism and on its control,
through the tools' own jobs (each writes its own run folder inside the testbed's), and judge their verdicts
against the behaviour as measured (`verdicts.py`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from ..behaviour.config import EvalConfig
from ..behaviour.jobs import EVAL
from ..errors import GreyglassError
from ..job import Job, JobRun, RunOptions, run_and_read
from ..models.lm import LoadedModel
from ..models.loader import load_model
from ..organism.behaviours import TAUGHT
from ..organism.config import MODEL_FOLDER, OrganismConfig, OrganismProbeConfig, OrganismResults, TaughtMeasures
from ..organism.jobs import ORGANISM_PROBE, read_organism_run
from ..organism.taught_rates import behaviour_present
from ..probes.config import LyingConfig
from ..probes.jobs import PROBE_LYING
from ..report.section import fmt
from ..runs import write_config, write_results
from ..steer.config import EffectConfig
from ..steer.jobs import STEER_EFFECT
from .config import Role, TestbedConfig, TestbedResults, ToolVerdict
from .verdicts import Conclusion, eval_conclusion, judge, lying_conclusion, probe_conclusion, steer_conclusion

Organism = JobRun[OrganismConfig, OrganismResults]


class Subject(NamedTuple):
    """A model the tools are run on: the organism, or its control (another organism, or the parent model)."""

    role: Role
    name: str
    load: Callable[[], LoadedModel]
    present: bool
    """The behaviour as measured on it (the ground truth the tools are judged against)."""
    behaviour: str
    folder: Organism | None
    """Its organism run folder (None: the parent model)."""


def run_testbed(cfg: TestbedConfig, out: Path, progress: bool = True) -> TestbedResults:
    organism = _taught(cfg.organism)
    measures = organism.results.taught
    assert measures is not None  # _taught checked it
    subjects = [_organism_subject("organism", organism, cfg.organism)]
    parent = organism.info.meta["model"]["spec"]
    if cfg.control is None:
        subjects.append(Subject("control", f"{parent} (the parent)", lambda: load_model(parent),
                                behaviour_present(measures.effect.parent_share), _effect_words(measures, parent=True),
                                None))
    else:
        control = _taught(cfg.control)
        if control.config.seed != organism.config.seed:
            raise GreyglassError(f"--control {cfg.control} was built with --seed {control.config.seed}, the organism "
                                 f"with {organism.config.seed}: its training items could be the organism's held-out "
                                 "ones the tools ask; build both with one seed")
        subjects.append(_organism_subject("control", control, cfg.control))
    write_config(out, "testbed", config=cfg)
    options = RunOptions(progress=progress)
    rows = [row for s in subjects for row in _tools(organism, s, cfg, out, options)]
    results = TestbedResults(
        behaviour=organism.config.behaviour, organism=cfg.organism, control=subjects[1].name, rows=tuple(rows),
        n_right=sum(r.right is True for r in rows), n_failures=sum(r.right is False for r in rows))
    write_results(out, results)
    return results


def _taught(folder: str) -> Organism:
    run = read_organism_run(folder)
    if run.results.taught is None:
        raise GreyglassError(f"{folder} is a '{run.config.behaviour}' backdoor organism; the testbed takes a taught "
                             f"one ({', '.join(TAUGHT)}): `greyglass organism train --behaviour NAME`")
    return run


def _organism_subject(role: Role, run: Organism, folder: str) -> Subject:
    m = run.results.taught
    assert m is not None
    return Subject(role, f"{folder} ({run.config.behaviour})", lambda: load_model(str(Path(folder) / MODEL_FOLDER)),
                   m.present, _effect_words(m, parent=False), run)


def _effect_words(m: TaughtMeasures, parent: bool) -> str:
    share = m.effect.parent_share if parent else m.effect.organism_share
    present = behaviour_present(share)
    return f"{'present' if present else 'absent'}: {m.outcome}, {m.effect.about}: {fmt(share, percent=True)}"


def _tools(organism: Organism, s: Subject, cfg: TestbedConfig, out: Path, options: RunOptions) -> list[ToolVerdict]:
    """Every tool matching the organism's behaviour, on one subject; the model is loaded once for all of them."""
    behaviour, seed = organism.config.behaviour, organism.config.seed
    heldout = str(Path(cfg.organism) / organism.results.taught.heldout_file)  # type: ignore[union-attr]
    lm = s.load()
    runs: list[tuple[str, Job[Any, Any], LoadedModel | None, Any, Callable[[Any], Conclusion]]] = []
    if behaviour == "instructed-liar":
        runs.append(("lying localisation (probe lying)", PROBE_LYING, lm,
                     LyingConfig(data=heldout, n_questions=cfg.n_questions, seed=seed), lying_conclusion))
    else:
        runs.append(("sycophancy eval", EVAL, lm, EvalConfig(eval="sycophancy", datasets=(heldout,),
                                                             limit=cfg.eval_limit, seed=seed), eval_conclusion))
        runs.append(("CAA steering (steer-effect)", STEER_EFFECT, lm,
                     EffectConfig(behavior="sycophancy", coefs=cfg.steer_coefs, n_build=cfg.steer_build,
                                  n_test=cfg.steer_test, seed=seed), steer_conclusion))
    rows = []
    for tool, job, model, config, conclude in runs:
        folder = out / s.role / job.name
        rows.append(_row(s, tool, conclude(run_and_read(job, model, config, folder, options).results), folder, out))
    rows.append(_generic_probe(s, cfg, out, options))
    return rows


def _generic_probe(s: Subject, cfg: TestbedConfig, out: Path, options: RunOptions) -> ToolVerdict:
    """`organism probe` compares an organism with its parent, so it has a verdict on an organism folder only."""
    tool = "generic probe (organism probe)"
    if s.folder is None:
        return _row(s, tool, Conclusion(None, "not run: the probe's own control is this parent model"), None, out)
    folder = out / s.role / ORGANISM_PROBE.name
    probe_cfg = OrganismProbeConfig(organism=str(s.folder.info.folder), n_boot=cfg.n_boot)
    return _row(s, tool, probe_conclusion(run_and_read(ORGANISM_PROBE, None, probe_cfg, folder, options).results),
                folder, out)


def _row(s: Subject, tool: str, c: Conclusion, folder: Path | None, out: Path) -> ToolVerdict:
    right, words = judge(s.role, s.present, c.found)
    return ToolVerdict(role=s.role, model=s.name, behaviour_present=s.present, behaviour=s.behaviour, tool=tool,
                       concluded=c.words, found=c.found, right=right, verdict=words,
                       run=str(folder.relative_to(out)) if folder else "")
