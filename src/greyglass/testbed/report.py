"""The testbed's report section: one table, each tool's verdict on the organism and on the control."""

from __future__ import annotations

from ..job import RunInfo
from ..report.section import Section, Table, provenance
from .config import TestbedConfig, TestbedResults


def testbed_section(res: TestbedResults, cfg: TestbedConfig, run: RunInfo) -> Section:
    failures = [f"{r.tool} {r.verdict.removeprefix('failure: ')}" for r in res.rows if r.right is False]
    judged = res.n_right + res.n_failures
    if not any(r.behaviour_present for r in res.rows if r.role == "organism"):
        headline = (f"The '{res.behaviour}' organism does not show its behaviour as measured, so this tests only whether "
                    f"the tools stay silent, not whether they can find it: {res.n_right} of {judged} verdicts right"
                    + (f"; wrong: {'; '.join(failures)}." if failures else "."))
    else:
        headline = (f"Every tool was right on the '{res.behaviour}' organism and its control ({res.n_right} of {judged})."
                    if not failures else
                    f"{res.n_failures} of {judged} tool verdicts on the '{res.behaviour}' organism and its control were "
                    f"wrong: {'; '.join(failures)}.")
    return Section(
        kind="testbed", title=f"Do the tools find a behaviour put there on purpose? ({res.behaviour})",
        headline=headline,
        table=Table(("model", "behaviour as measured", "tool", "what the tool concluded", "verdict"),
                    [(r.model, r.behaviour, r.tool, r.concluded, r.verdict) for r in res.rows]),
        numbers=[("organism", res.organism), ("control", res.control),
                 ("verdicts right / failures", f"{res.n_right} / {res.n_failures}")]
        + [(f"{r.tool} on the {r.role}: its run folder", str(run.folder / r.run)) for r in res.rows if r.run],
        shows=["Whether each tool says 'found' where the behaviour was measured on held-out items and 'not found' "
               "where it was not: a tool's failure on a known answer."],
        does_not_show=["That a tool works on behaviours that arise naturally, or on larger models: these organisms "
                       "were trained on purpose, small, in one format.",
                       "Anything about a row whose behaviour is measured absent on the organism: the tool then had "
                       "nothing to find."],
        provenance=provenance(run.meta, str(run.folder)),
    )
