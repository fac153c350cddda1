"""One section of the evidence report: a headline the numbers support, a figure, the numbers (and
a table where a run compares several things), what the evidence shows and does not show, and
where it came from.

A section is the one place a run's results are put into words. It is rendered three ways, each
from the same fields: `summary()` for the terminal, `render()` for HTML (the report and the
browser), `markdown()` for a file beside the run (the frequency experiment's `table.md`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from markupsafe import Markup

from ..stats import Estimate
from ..templates import fragment


class Table(NamedTuple):
    """A grid of results, one row per thing compared (e.g. one SAE per row), shown after the headline."""

    header: tuple[str, ...]
    rows: list[tuple[str, ...]]


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
    table: Table | None = None

    def summary(self) -> str:
        """The terminal text for a run: the headline, the table and the numbers, exactly as the report shows them."""
        grid = [] if self.table is None else _aligned([self.table.header, *self.table.rows])
        return "\n".join([self.headline, *grid, *_aligned(self.numbers)])

    def markdown(self) -> str:
        """The section as markdown: title, headline, the table and the numbers as tables."""
        parts = [f"## {self.title}", self.headline]
        if self.table is not None:
            parts.append(_markdown_table(self.table.header, self.table.rows))
        if self.numbers:
            parts.append(_markdown_table(("measure", "value (95% interval where given)"), self.numbers))
        return "\n\n".join(parts) + "\n"

    def render(self, anchor: str) -> Markup:
        """The section as HTML (template `report/section.html`), with `anchor` as its id."""
        return fragment("report/section.html", section=self, anchor=anchor)


def _aligned(rows: list[tuple[str, ...]]) -> list[str]:
    """Rows as indented lines with each column (but the last) padded to its widest cell."""
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(max((len(r) for r in rows), default=0))]
    return ["  " + "  ".join(c.ljust(w) if i < len(r) - 1 else c for i, (c, w) in enumerate(zip(r, widths))) for r in rows]


def _markdown_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    cell = lambda text: text.replace("|", "\\|")  # noqa: E731  (a | inside a cell would split it)
    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(cell, r)) + " |" for r in rows])


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
