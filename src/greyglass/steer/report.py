"""Evidence-report section for a measured steering effect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..report.build import builder
from ..report.figures import run_svg
from ..report.section import Section, fmt, provenance


@builder("steer_effect")
def effect_section(config: dict[str, Any], results: dict[str, Any], folder: Path) -> Section:
    rows = sorted(results["coefs"], key=lambda r: r["coef"])
    low, high = rows[0]["p_matching"], rows[-1]["p_matching"]
    moved = low["ci_high"] < high["ci_low"]
    behaviour = results["behavior"]
    headline = (f"Adding one direction inside the model changes its answers: the share of '{behaviour}' answers goes "
                f"from {100 * low['value']:.0f}% to {100 * high['value']:.0f}% on questions not used to build it."
                if moved else
                f"Steering along this direction did not reliably change the model's '{behaviour}' answers.")
    return Section(
        kind="steering", title=f"Can we push the model towards '{behaviour}'?", headline=headline,
        figure_svg=run_svg(folder, "effect.svg"),
        numbers=[(f"coefficient {r['coef']:+g}: probability of the behaviour's answer", fmt(r["p_matching"], percent=True))
                 for r in rows] + [("held-out questions", str(results["n_test"])), ("where", results["site"]),
                                   ("coefficient unit", results.get("coef_unit", "the vector's own length (older run)"))],
        shows=["That the direction is causal for this behaviour on two-choice questions, not only correlated with it."],
        does_not_show=["How steering changes free-form conversation, or other behaviours it may disturb."],
        provenance=provenance(config, str(folder)),
    )
