"""HTML for the browser's pages: one layout, inline CSS (the report's own), no scripts or fonts.

Every value that came from a file or a request is escaped here; handlers pass plain data.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from ..report.page import CSS as REPORT_CSS

CSS = REPORT_CSS + """
nav { display: flex; gap: 1.2rem; border-bottom: 1px solid var(--line); padding-bottom: .5rem; margin-bottom: 1rem; }
nav b { margin-right: auto; }
form { margin: .6rem 0 1rem; display: flex; flex-wrap: wrap; gap: .5rem; align-items: end; }
label { display: flex; flex-direction: column; font-size: .85rem; color: var(--muted); }
input, select, textarea { font: inherit; padding: .25rem .4rem; border: 1px solid var(--line); border-radius: 4px; }
textarea { width: 100%; min-height: 4rem; }
button { font: inherit; padding: .3rem .9rem; background: var(--accent); color: #fff; border: 0; border-radius: 4px; }
pre { background: #f5f7fa; padding: .6rem; overflow-x: auto; font-size: .8rem; max-height: 30rem; }
.tok { display: inline-block; margin: 0 .15rem .4rem 0; padding: .1rem .3rem; border: 1px solid var(--line);
       border-radius: 4px; font-family: ui-monospace, monospace; font-size: .85rem; vertical-align: top; }
.tok small { display: block; color: var(--muted); font-family: system-ui, sans-serif; font-size: .7rem; }
.gen { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; } .gen div { border: 1px solid var(--line);
       border-radius: 6px; padding: .6rem; white-space: pre-wrap; }
.error { border-left: 4px solid var(--warn); padding: .4rem .8rem; background: #fdf6ec; }
"""

NAV = [("/", "Runs"), ("/features", "Features"), ("/text", "Text → latents"), ("/steer", "Steering")]


def layout(title: str, body: str) -> str:
    links = "".join(f'<a href="{href}">{escape(name)}</a>' for href, name in NAV)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(title)} · greyglass</title>'
            f"<style>{CSS}</style></head><body><nav><b>greyglass</b>{links}</nav>{body}</body></html>\n")


def nav_bar() -> str:
    """The app's navigation, to put at the top of pages built elsewhere (feature dashboards)."""
    return ('<nav style="display:flex;gap:1.2rem;margin-bottom:1rem">'
            + "".join(f'<a href="{h}">{escape(n)}</a>' for h, n in NAV) + "</nav>")


def error_page(status: int, message: str) -> str:
    return layout(f"Error {status}", f'<h1>That did not work</h1><p class="error">{escape(message)}</p>'
                                     '<p><a href="/">Back to the runs</a></p>')


def href(path: str, **query: Any) -> str:
    """A link with URL-quoted path and query; run ids keep their slashes."""
    q = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in query.items() if v not in (None, ""))
    return escape(quote(path, safe="/._-") + (f"?{q}" if q else ""))


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], raw: bool = False) -> str:
    """A table; cells are escaped unless `raw` (for cells that hold links built with `link`)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    cell = (lambda c: c) if raw else escape
    body = "".join("<tr>" + "".join(f"<td>{cell(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def link(url: str, text: Any) -> str:
    return f'<a href="{url}">{escape(str(text))}</a>'


def raw_json(data: Any) -> str:
    return f"<pre>{escape(json.dumps(data, indent=2, default=str))}</pre>"


def short(value: Any, n: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= n else text[:n - 1] + "…"


def options(choices: Iterable[tuple[str, str]], selected: str | None) -> str:
    return "".join(f'<option value="{escape(v)}"{" selected" if v == selected else ""}>{escape(t)}</option>'
                   for v, t in choices)


def tokens_html(tokens: list[str], notes: list[str], shade: list[float] | None = None) -> str:
    """Tokens in boxes, each with a note under it; `shade` in [0, 1] tints the box."""
    out = []
    for i, (t, note) in enumerate(zip(tokens, notes)):
        style = f' style="background:rgba(230,120,40,{shade[i]:.2f})"' if shade else ""
        out.append(f'<span class="tok"{style}>{escape(t.replace(chr(10), "⏎")) or "&nbsp;"}<small>{escape(note)}</small></span>')
    return "<div>" + "".join(out) + "</div>"
