"""One section of the evidence report: a headline the numbers support, a figure, the numbers,
what the evidence shows and does not show, and where it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from ..stats import Estimate
from ..templates import fragment


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

    def render(self, anchor: str) -> Markup:
        """The section as HTML (template `report/section.html`), with `anchor` as its id."""
        return fragment("report/section.html", section=self, anchor=anchor)


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
    """The provenance rows every section shows, from a run's config.json (as written, so any JSON value)."""
    model, versions = (v if isinstance(v, dict) else {} for v in (config.get("model"), config.get("versions")))
    command = config.get("command")
    return {
        "run folder": folder,
        "model": model.get("name") or model.get("spec"),
        "weights sha256": model.get("sha256"),
        "data fingerprint": config.get("corpus_fingerprint") or config.get("data_fingerprint"),
        "command": " ".join(map(str, command)) if isinstance(command, list) else command,
        "greyglass version": versions.get("greyglass"),
        "date": config.get("created"),
    }
