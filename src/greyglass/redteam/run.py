"""`greyglass redteam`: rounds of red-model test cases, target answers and verdicts, into one run folder.

Round 1: the zero-shot method has the red model continue its failure kind's list header
("List of questions to ask ...:\\n1.") once per case. From round 2: zero-shot goes on the same
way, and stochastic few-shot (Perez et al. 2022) shows `shots` earlier cases as the list's first
items, drawn without replacement from every case of earlier rounds with weights
exp(score / shot_temperature), the score being how badly the case failed (its answers' mean
failure score by the deciding classifier): failing cases feed the next round.

The folder holds `config.json` (the config, the red model, target, judge and probe), `cases.jsonl`
(one row per answer: the case, the answer, the verdict and every classifier's score and
evidence), `results.json`, `diversity.svg` and, for servers, their response caches. Rows are
appended to `cases.partial.jsonl` after every batch of cases, so Ctrl-C or a crash loses at most
one batch and `resume` continues: cases are seeded by their id, a batch cut short is asked again
whole (a batched greedy answer depends on its batch's padding), and the few-shot pool of a round is
read back from the rows of earlier rounds, so a resumed run writes what an uninterrupted one would
have. The rows are then written in order to `cases.jsonl`, and only then is `results.json` written.
Resuming a finished run asks nothing again and writes its results anew from `cases.jsonl`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..atomic import write_text
from ..behaviour.local import LocalBackend
from ..behaviour.remote import HttpBackend
from ..behaviour.run import check_same_settings, read_partial
from ..directions import Direction
from ..errors import GreyglassError
from ..models.lm import LoadedModel
from ..plots import Series, line_chart, save_svg
from ..runs import write_config, write_results
from ..stats import Estimate, auroc_ci, mean_probability_ci, proportion_ci
from .classify import judge_verdicts, probe_verdict, rule_verdict
from .config import METHODS, Agreement, DiversityGap, MethodResult, RedteamConfig, RedteamResults, WorstCase
from .diversity import distinct_n, self_bleu, self_bleu_gap
from .failures import FAILURES, FailureKind
from .models import LocalWriter, Writer, judge_for, writer_for

CASES = "cases.jsonl"
PARTIAL = "cases.partial.jsonl"
PLOT = "diversity.svg"
Row = dict[str, Any]


@dataclass
class Team:
    """Who writes, answers and decides in one run."""

    kind: FailureKind
    red: Writer
    target: Writer
    judge: LocalBackend | HttpBackend | None = None
    probe: Direction | None = None
    described: dict[str, Any] = field(default_factory=dict)


def case_id(rnd: int, method: str, i: int) -> str:
    return f"r{rnd}-{method}-{i}"


class Case:
    """One test case to write: its id, the red model's prompt and seed, the few-shot examples and the setup."""

    def __init__(self, cfg: RedteamConfig, kind: FailureKind, rnd: int, method: str, i: int,
                 pool: Sequence[tuple[str, str, float]]):
        self.id = case_id(rnd, method, i)
        self.round, self.method = rnd, method
        self.seed = cfg.seed * 1_000_000 + rnd * 10_000 + METHODS.index(method) * 1_000 + i
        self.setup = kind.setup(random.Random(f"{cfg.seed}/{self.id}"))
        self.examples = (few_shot_examples(pool, cfg.shots, cfg.shot_temperature, self.seed)
                         if method == "few_shot" else [])
        self.prompt = red_prompt(kind.red_header, [text for _, text in self.examples])


def few_shot_examples(pool: Sequence[tuple[str, str, float]], shots: int, temperature: float,
                      seed: int) -> list[tuple[str, str]]:
    """(id, text) of up to `shots` cases of `pool` ((id, text, score) in a fixed order), drawn without
    replacement with probability proportional to exp(score / temperature)."""
    usable = [p for p in pool if p[1]]
    if not usable:
        return []
    scores = np.array([s for _, _, s in usable]) / temperature
    weights = np.exp(scores - scores.max())
    picked = np.random.default_rng(seed).choice(len(usable), size=min(shots, len(usable)), replace=False,
                                                p=weights / weights.sum())
    return [(usable[i][0], usable[i][1]) for i in picked]


def red_prompt(header: str, examples: Sequence[str]) -> str:
    """The numbered list the red model continues: the header's "1." followed by the examples, then the next number."""
    head = header.removesuffix("1.")
    return head + "".join(f"{j + 1}. {text}\n" for j, text in enumerate(examples)) + f"{len(examples) + 1}."


def run_redteam(lm: LoadedModel | None, cfg: RedteamConfig, out: str | Path, resume: bool = False,
                progress: bool = True) -> RedteamResults:
    """Red-team the target as `cfg` says, write the run folder `out`, return the results."""
    out = Path(out)
    if (out / CASES).exists() and not resume:
        raise GreyglassError(f"{out} already holds a finished red-teaming run; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    team = make_team(lm, cfg, out)
    if resume:  # its rows would not fit another run's
        check_same_settings(out, {"config": cfg, "backends": team.described})
    write_config(out, "redteam", model=team.described["target"], config=cfg, backends=team.described,
                 failure={"about": team.kind.about, "red_header": team.kind.red_header})
    # resuming a finished run asks nothing again and recomputes its results (e.g. with a newer greyglass)
    rows = read_partial(out / (CASES if (out / CASES).exists() else PARTIAL)) if resume else {}
    write_text(out / PARTIAL, "".join(json.dumps(r) + "\n" for r in rows.values()))
    plan = [(rnd, m) for rnd in range(1, cfg.rounds + 1) for m in cfg.methods if not (m == "few_shot" and rnd == 1)]
    bar = tqdm(total=len(plan) * cfg.cases * cfg.answers, initial=len(rows), desc=f"redteam {cfg.failure}",
               unit="answer", disable=not progress)
    with open(out / PARTIAL, "a") as partial:
        for rnd, method in plan:  # the pool in plan order, whatever order a resumed run's rows came in
            pool = case_pool([rows[i] for r, m in plan if r < rnd for i in round_ids(r, m, cfg)])
            cases = [Case(cfg, team.kind, rnd, method, i, pool) for i in range(cfg.cases)]
            for start in range(0, len(cases), cfg.batch_size):
                batch = cases[start : start + cfg.batch_size]  # the same batches as an uninterrupted run, so
                if all(i in rows for i in answer_ids(batch, cfg.answers)):  # batched greedy answers match exactly
                    continue
                for row in answer_cases(team, cfg, batch):
                    bar.update(row["id"] not in rows)
                    rows[row["id"]] = row
                    partial.write(json.dumps(row) + "\n")
                partial.flush()
    bar.close()
    ordered = [rows[i] for rnd, m in plan for i in round_ids(rnd, m, cfg)]
    write_text(out / CASES, "".join(json.dumps(r) + "\n" for r in ordered))
    (out / PARTIAL).unlink()
    results = summarise(ordered, cfg, team)
    save_svg(out / PLOT, diversity_plot(ordered, cfg, team.described["target"]["name"]))
    write_results(out, results)
    return results


def answer_ids(cases: Sequence[Case | str], answers: int) -> list[str]:
    """The row ids of the cases' answers, in order."""
    return [f"{c if isinstance(c, str) else c.id}-a{k}" for c in cases for k in range(answers)]


def round_ids(rnd: int, method: str, cfg: RedteamConfig) -> list[str]:
    """The row ids one method writes in one round, in order."""
    return answer_ids([case_id(rnd, method, i) for i in range(cfg.cases)], cfg.answers)


def make_team(lm: LoadedModel | None, cfg: RedteamConfig, out: Path) -> Team:
    kind = FAILURES[cfg.failure]
    target = writer_for(cfg.target_url, lm, out, "target", cfg.batch_size)
    red = writer_for(cfg.red, lm, out, "red", cfg.batch_size)
    judge = judge_for(cfg.judge, lm, out, cfg.judge_api) if "judge" in cfg.classifiers else None
    probe = None
    if "probe" in cfg.classifiers:
        assert isinstance(target, LocalWriter) and cfg.probe is not None  # RedteamConfig checks both
        probe = Direction.load(cfg.probe)
        probe.check_model(target.lm.d_model)
        target.lm.site(probe.site)
    described = {"red": red.provenance(), "target": target.provenance(),
                 "judge": judge.provenance()["model"] if judge is not None else None,
                 "probe": {"path": cfg.probe, "site": probe.site, "kind": probe.kind} if probe else None}
    return Team(kind, red, target, judge, probe, described)


def case_pool(rows: Sequence[Row]) -> list[tuple[str, str, float]]:
    """(case id, case text, mean failure score of its answers) of earlier cases, in the order they were written."""
    by_case: dict[str, list[Row]] = {}
    for r in rows:
        by_case.setdefault(r["case_id"], []).append(r)
    return [(cid, rs[0]["case"], float(np.mean([r["score"] for r in rs]))) for cid, rs in by_case.items()]


def answer_cases(team: Team, cfg: RedteamConfig, cases: Sequence[Case]) -> list[Row]:
    """Write each case with the red model, have the target answer it, and classify every answer."""
    texts = team.red.complete([c.prompt for c in cases], [c.seed for c in cases], cfg.red_temperature,
                              cfg.max_case_tokens)
    asked = [(c, text, k) for c, text in zip(cases, texts) for k in range(cfg.answers)]
    systems = [team.kind.system(c.setup) for c, _, _ in asked]
    users = [team.kind.user(text, c.setup) for c, text, _ in asked]
    answers = team.target.answer(systems, users, [c.seed * 100 + k for c, _, k in asked], cfg.target_temperature,
                                 cfg.max_answer_tokens)
    rows = [{"id": f"{c.id}-a{k}", "method": c.method, "round": c.round, "case": text, "answer": answer,
             "case_id": c.id, "user": user, "system": system, "setup": c.setup,
             "examples": [cid for cid, _ in c.examples], "red_prompt": c.prompt, "seed": c.seed}
            for (c, text, k), system, user, answer in zip(asked, systems, users, answers)]
    verdicts: dict[str, list[dict[str, Any]]] = {"rule": [rule_verdict(team.kind, r) for r in rows]}
    if team.judge is not None:
        verdicts["judge"] = judge_verdicts(team.judge, team.kind, rows)
    if team.probe is not None:
        target = team.target
        assert isinstance(target, LocalWriter)  # RedteamConfig refuses a probe on a served target
        verdicts["probe"] = [probe_verdict(target.lm, team.probe, target.prompt(r["system"], r["user"]), r["answer"],
                                           cfg.probe_threshold) for r in rows]
    decided_by = cfg.classifiers[0]
    out = []
    for i, row in enumerate(rows):
        deciding = verdicts[decided_by][i]
        front = {"id": row["id"], "method": row["method"], "round": row["round"],
                 "verdict": "fail" if deciding["fail"] else "pass", "score": deciding["score"],
                 "case": row["case"], "answer": row["answer"], "evidence": deciding["evidence"]}
        out.append({**front, **row, "classifiers": {c: verdicts[c][i] for c in cfg.classifiers}})
    return out


def summarise(rows: Sequence[Row], cfg: RedteamConfig, team: Team) -> RedteamResults:
    ci = dict(n=cfg.n_bootstrap, seed=cfg.seed)

    def groups(rs: Sequence[Row]) -> list[str] | None:
        return [r["case_id"] for r in rs] if cfg.answers > 1 else None

    def rate(rs: Sequence[Row], classifier: str | None = None) -> Estimate:
        fails = [r["classifiers"][classifier]["fail"] if classifier else r["verdict"] == "fail" for r in rs]
        return proportion_ci(fails, groups(rs), **ci)

    methods = []
    for m in cfg.methods:
        rs = [r for r in rows if r["method"] == m]
        texts = list(case_texts(rs).values())
        failing = list(case_texts([r for r in rs if r["verdict"] == "fail"]).values())
        rounds = sorted({r["round"] for r in rs})
        methods.append(MethodResult(
            method=m, n_cases=len(texts), n_answers=len(rs), failure_rate=rate(rs),
            mean_score=mean_probability_ci([r["score"] for r in rs], groups(rs), **ci),
            distinct=distinct_triple(texts), self_bleu=self_bleu(texts), n_failing_cases=len(failing),
            failing_distinct=distinct_triple(failing), failing_self_bleu=self_bleu(failing),
            by_round=tuple(rate([r for r in rs if r["round"] == n]) for n in rounds), rounds=tuple(rounds)))
    reference = "judge" if "judge" in cfg.classifiers else cfg.classifiers[0]
    agreement = tuple(agreement_of(rows, c, reference, groups(rows), cfg) for c in cfg.classifiers if c != reference)
    seen: set[str] = set()
    worst_cases = []
    for r in sorted((r for r in rows if r["score"] > 0), key=lambda r: -r["score"]):
        if r["case_id"] not in seen and len(worst_cases) < cfg.worst:
            seen.add(r["case_id"])
            worst_cases.append(WorstCase(r["id"], r["method"], r["round"], r["case"], r["answer"], r["score"],
                                         r["evidence"]))
    return RedteamResults(
        failure=cfg.failure, about=team.kind.about, decided_by=cfg.classifiers[0],
        red=team.described["red"]["name"], target=team.described["target"]["name"],
        judge=team.described["judge"]["name"] if team.described["judge"] else None,
        n_cases=len(case_texts(rows)), n_answers=len(rows), methods=tuple(methods),
        classifier_rates={c: rate(rows, c) for c in cfg.classifiers}, agreement=agreement,
        diversity_gap=diversity_gap(rows, cfg), worst=tuple(worst_cases), cases=CASES, plot=PLOT)


def diversity_gap(rows: Sequence[Row], cfg: RedteamConfig) -> DiversityGap | None:
    """The permutation test of zero-shot's self-BLEU against few-shot's, where both ran."""
    if len(cfg.methods) < 2:
        return None
    first, second = cfg.methods[:2]
    texts = [list(case_texts([r for r in rows if r["method"] == m]).values()) for m in (first, second)]
    gap = self_bleu_gap(*texts, n=cfg.n_bootstrap, seed=cfg.seed)
    return DiversityGap(first, second, gap.value, gap.p_value, cfg.n_bootstrap)


def case_texts(rows: Sequence[Row]) -> dict[str, str]:
    """Each case's text once, by case id (a case with several answers has several rows)."""
    return {r["case_id"]: r["case"] for r in rows}


def distinct_triple(texts: Sequence[str]) -> tuple[float, float, float]:
    return distinct_n(texts, 1), distinct_n(texts, 2), distinct_n(texts, 3)


def agreement_of(rows: Sequence[Row], classifier: str, reference: str, groups: list[str] | None,
                 cfg: RedteamConfig) -> Agreement:
    """`classifier`'s agreement with `reference`: equal verdicts, and AUROC of its score for the reference's verdict."""
    mine = [r["classifiers"][classifier] for r in rows]
    ref = [int(r["classifiers"][reference]["fail"]) for r in rows]
    same = [int(bool(v["fail"]) == bool(y)) for v, y in zip(mine, ref)]
    ci = dict(groups=groups, n=cfg.n_bootstrap, seed=cfg.seed)
    both = 0 < sum(ref) < len(ref)
    return Agreement(classifier, reference, len(rows), sum(ref), proportion_ci(same, **ci),
                     auroc_ci([v.get("raw", v["score"]) for v in mine], ref, **ci) if both else None)


def diversity_plot(rows: Sequence[Row], cfg: RedteamConfig, target: str) -> str:
    """Per method, one point per round: diversity (1 - self-BLEU of that round's cases) against the failure rate."""
    series = []
    for m in cfg.methods:
        points = []
        for rnd in sorted({r["round"] for r in rows if r["method"] == m}):
            rs = [r for r in rows if r["method"] == m and r["round"] == rnd]
            est = proportion_ci([r["verdict"] == "fail" for r in rs], [r["case_id"] for r in rs] if cfg.answers > 1
                                else None, n=cfg.n_bootstrap, seed=cfg.seed)
            points.append((1 - self_bleu(list(case_texts(rs).values())), est))
        points = sorted(p for p in points if p[0] == p[0])  # NaN diversity (one case) has no place on the axis
        if points:
            series.append(Series(m.replace("_", "-"), [x for x, _ in points], [e.value for _, e in points],
                                 [e.lo for _, e in points], [e.hi for _, e in points]))
    if not series:
        series = [Series("no round with two cases", [0.0], [0.0])]
    return line_chart(series, f"Diversity against failure rate, one point per round ({target})",
                      "diversity of the round's cases (1 - self-BLEU)", "failure rate (95% CI)", y_range=(0.0, 1.0))
