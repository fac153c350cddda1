"""The report section (and terminal summary) of `greyglass redteam`: failure rates per generation method with
their intervals, how varied each method's cases are, the classifiers' agreement, and the worst cases."""

from __future__ import annotations

from ..job import RunInfo
from ..report.figures import run_svg
from ..report.section import Section, Table, fmt, provenance
from .config import MethodResult, RedteamConfig, RedteamResults


def _name(method: str) -> str:
    return method.replace("_", "-")


def _num(value: float) -> str:
    return "n/a" if value != value else f"{value:.2f}"


def comparison(res: RedteamResults) -> str:
    """Which method finds failures more often, claimed only where the two intervals do not overlap."""
    if len(res.methods) < 2:
        return ""
    a, b = sorted(res.methods, key=lambda m: -m.failure_rate.value)[:2]
    if a.failure_rate.lo > b.failure_rate.hi:
        return f"; {_name(a.method)} cases fail more often than {_name(b.method)} ones"
    return "; the intervals do not show either method finding failures more often"


def diversity_sentence(res: RedteamResults) -> str:
    """Which method's cases are the more varied (lower self-BLEU), claimed only where the permutation test says so."""
    gap = res.diversity_gap
    if gap is None or gap.self_bleu_gap != gap.self_bleu_gap:
        return ""
    a, b = res.method(gap.first), res.method(gap.second)
    values = (f"self-BLEU {_name(a.method)} {a.self_bleu:.2f}, {_name(b.method)} {b.self_bleu:.2f}, "
              f"permutation p = {gap.p_value:.2f}")
    if gap.p_value < 0.05:
        varied = b if gap.self_bleu_gap > 0 else a
        return f" {_name(varied.method)} writes the more varied cases ({values})."
    return f" Neither method's cases are shown to be more varied ({values})."


def headline(res: RedteamResults) -> str:
    rates = ", ".join(f"{_name(m.method)} cases {fmt(m.failure_rate, percent=True)} of answers"
                      for m in res.methods)
    return (f"Red-teaming {res.target} for {res.about} (decided by the {res.decided_by} classifier): {rates}"
            f"{comparison(res)}.{diversity_sentence(res)}")


def method_row(m: MethodResult) -> tuple[str, ...]:
    return (_name(m.method), str(m.n_cases), fmt(m.failure_rate, percent=True), str(m.n_failing_cases),
            " / ".join(_num(d) for d in m.distinct), _num(m.self_bleu), _num(m.failing_self_bleu))


def redteam_section(res: RedteamResults, cfg: RedteamConfig, run: RunInfo) -> Section:
    table = Table(("method", "cases", "answers failing (95% CI)", "failing cases", "distinct-1/2/3", "self-BLEU",
                   "self-BLEU of failing cases"), [method_row(m) for m in res.methods])
    numbers = [("red model / target / judge", f"{res.red} / {res.target} / {res.judge or 'none'}"),
               ("cases / answers", f"{res.n_cases} / {res.n_answers}")]
    numbers += [(f"{_name(m.method)} failure rate, round {r}", fmt(e, percent=True))
                for m in res.methods for r, e in zip(m.rounds, m.by_round)]
    if res.diversity_gap is not None:
        g = res.diversity_gap
        numbers.append((f"self-BLEU {_name(g.first)} minus {_name(g.second)}",
                        f"{g.self_bleu_gap:+.3f} (permutation p = {g.p_value:.3f}, {g.n_permutations} shuffles)"))
    numbers += [(f"failure rate by the {c} classifier", fmt(e, percent=True)) for c, e in res.classifier_rates.items()]
    numbers += [(f"{a.classifier} vs {a.reference} ({a.reference} failures: {a.n_reference_failures} of {a.n}): "
                 "same verdict", fmt(a.accuracy, percent=True)
                 + (f", AUROC {fmt(a.auroc)}" if a.auroc else ", AUROC n/a (the reference gave one verdict only)"))
                for a in res.agreement]
    numbers += [(f"worst {w.method} case ({w.id}, score {w.score:.2f})",
                 f"{w.case!r} -> {w.answer[:160]!r} [{w.evidence}]") for w in res.worst]
    if not res.worst:
        numbers.append(("worst cases", f"none: no answer scored above 0 by the {res.decided_by} classifier"))
    return Section(
        kind="red teaming", title=f"Red teaming: {res.about}", headline=headline(res), table=table,
        figure_svg=run_svg(run.folder, res.plot), numbers=numbers,
        shows=["How often test cases written by a red model make the target fail, per generation method "
               "(zero-shot, and stochastic few-shot from the earlier cases that failed worst; Perez et al. 2022), "
               "as judged by the named classifier.",
               "How varied each method's cases are (distinct-n, self-BLEU): a higher failure rate often comes "
               "with less varied cases."],
        does_not_show=["How often the target fails on inputs real users write: the cases come from one red model "
                       "and one prompt per failure kind.",
                       "That every failure is real: a rule set misses paraphrases and can match quoted text, and a "
                       "small judge model is itself unreliable; see the agreement rows and cases.jsonl."],
        notes=[f"Every case, answer, verdict and evidence: {res.cases} in the run folder."],
        provenance=provenance(run.meta, str(run.folder)))
