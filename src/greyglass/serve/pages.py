"""The browser's pages: one template per page under `templates/serve/`, all in one layout that
extends the shared shell (the report's stylesheet, no scripts or fonts).

Handlers pass plain data (text, numbers, `Link`s, the named tuples here); the templates escape
every value, so nothing from a file or a request reaches a page as markup.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple
from urllib.parse import quote

from ..templates import Link, render


class Table(NamedTuple):
    """A titled table of results; cells are text, numbers or `Link`s."""

    title: str
    headers: list[str]
    rows: list[Sequence[Any]]


class TokenBox(NamedTuple):
    """One token in a box with a note under it; `shade` in [0, 1] tints the box (None: no tint)."""

    text: str
    note: str
    shade: float | None = None


class TokenLatents(NamedTuple):
    """The text page's row of latents per token, and links to the dashboards of those latents."""

    site: str
    boxes: list[TokenBox]
    links: list[Link]


class ProbeRow(NamedTuple):
    """One saved direction's score on each token of the text page."""

    name: str
    kind: str
    site: str
    boxes: list[TokenBox]


class Generation(NamedTuple):
    """The steering page's baseline and steered generations, and what was added."""

    model: str
    what: str
    baseline: str
    steered: str


def page(name: str, title: str, **context: Any) -> str:
    """The page `templates/serve/<name>` in the browser's layout."""
    return render(f"serve/{name}", title=title, **context)


def error_page(status: int, message: str) -> str:
    return page("error.html", f"Error {status}", message=message)


def href(path: str, **query: Any) -> str:
    """A URL with quoted path and query (run ids keep their slashes); the template escapes it."""
    q = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in query.items() if v not in (None, ""))
    return quote(path, safe="/._-") + (f"?{q}" if q else "")


def link(path: str, text: Any, **query: Any) -> Link:
    return Link(href(path, **query), text)


def pretty_json(data: Any) -> str:
    return json.dumps(data, indent=2, default=str)


def short(value: Any, n: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= n else text[:n - 1] + "…"


def token_boxes(tokens: list[str], notes: list[str], shade: list[float] | None = None) -> list[TokenBox]:
    """Boxes for tokens, newlines shown as ⏎ and an empty token as a no-break space so its box keeps its size."""
    return [TokenBox(t.replace("\n", "⏎") or "\u00a0", note, shade[i] if shade else None)
            for i, (t, note) in enumerate(zip(tokens, notes))]


def positive_shades(scores: list[float]) -> list[float]:
    """Shades for scores: positive ones relative to the largest magnitude, negative ones none."""
    peak = max(abs(s) for s in scores) or 1.0
    return [max(s, 0) / peak for s in scores]
