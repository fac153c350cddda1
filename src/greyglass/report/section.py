"""One section of the evidence report: a headline the numbers support, a figure, the numbers,
what the evidence shows and does not show, and where it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Any

from ..stats import Estimate


@dataclass
class Section:
    """Everything one kind of evidence contributes to the report."""

    kind: str
    title: str
    headline: str
    """One plain-language sentence that the numbers support, and no more."""
    numbers: list[tuple[str, str]]
    """(what, value with its interval) rows."""
    shows: list[str]
    does_not_show: list[str]
    provenance: dict[str, Any]
    figure_svg: str = ""
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """The terminal text for a run: the headline and the numbers, exactly as the report shows them."""
        width = max((len(k) for k, _ in self.numbers), default=0)
        return "\n".join([self.headline, *(f"  {k:<{width}}  {v}" for k, v in self.numbers)])

    def render(self, anchor: str) -> str:
        rows = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in self.numbers)
        shows = "".join(f"<li>{escape(s)}</li>" for s in self.shows)
        limits = "".join(f"<li>{escape(s)}</li>" for s in self.does_not_show)
        notes = "".join(f"<p>{escape(n)}</p>" for n in self.notes)
        prov = "".join(f"<tr><td>{escape(k)}</td><td><code>{escape(str(v))}</code></td></tr>"
                       for k, v in self.provenance.items() if v not in (None, ""))
        figure = f"<figure>{self.figure_svg}</figure>" if self.figure_svg else ""
        return f"""<section id="{anchor}"><div class="kind">{escape(self.kind)}</div><h2>{escape(self.title)}</h2>
<p class="headline">{escape(self.headline)}</p>{figure}{notes}
<table><tr><th>measure</th><th>value (95% interval where given)</th></tr>{rows}</table>
<div class="boxes"><div class="box shows"><h3>What this shows</h3><ul>{shows}</ul></div>
<div class="box limits"><h3>What it does not show</h3><ul>{limits}</ul></div></div>
<details class="prov"><summary>Provenance</summary><table>{prov}</table></details></section>"""


def fmt(est: Estimate | dict[str, float] | float, digits: int = 3, percent: bool = False) -> str:
    """A number with its interval, e.g. `0.912 (0.880 to 0.940)` or `91.2% (88.0% to 94.0%)`."""
    if isinstance(est, dict):
        est = Estimate(est["value"], est.get("ci_low", float("nan")), est.get("ci_high", float("nan")))
    if not isinstance(est, Estimate):
        return f"{100 * est:.1f}%" if percent else f"{est:.{digits}g}"
    one = (lambda v: f"{100 * v:.1f}%") if percent else (lambda v: f"{v:.{digits}f}")
    if est.lo != est.lo:  # NaN: no interval
        return one(est.value)
    return f"{one(est.value)} ({one(est.lo)} to {one(est.hi)})"


def provenance(config: dict[str, Any], folder: str) -> dict[str, Any]:
    """The provenance rows every section shows, from a run's config.json."""
    model = config.get("model", {}) or {}
    command = config.get("command")
    return {
        "run folder": folder,
        "model": model.get("name") or model.get("spec"),
        "weights sha256": model.get("sha256"),
        "data fingerprint": config.get("corpus_fingerprint") or config.get("data_fingerprint"),
        "command": " ".join(command) if isinstance(command, list) else command,
        "greyglass version": (config.get("versions") or {}).get("greyglass"),
        "date": config.get("created"),
    }
