"""The one Jinja2 environment behind every HTML page greyglass makes: the evidence report, the
browser's pages and the feature dashboards.

Every page extends `base.html`, which inlines the one stylesheet `style.css`, so a report or a
dashboard stays a single file that fetches nothing. Autoescaping is on for every template and
undefined names raise, so text from a run folder, a database or a request is always escaped,
and a misspelt name fails instead of printing nothing.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup


class Link(NamedTuple):
    """A cell that renders as a link; `href` and `text` are escaped like any other value."""

    href: str
    text: Any


# What greyglass's figures are drawn with; anything else (script, foreignObject, image, use,
# style) could run code or fetch something when the page is opened.
_SVG_TAGS = {"svg", "g", "rect", "line", "circle", "ellipse", "polygon", "polyline", "path", "text", "tspan", "title"}
_TAG = re.compile(r"<\s*([A-Za-z][\w:.-]*)")
_ACTIVE_ATTRIBUTE = re.compile(r"<[^>]*(\s(on\w+|[\w:]*href)\s*=|url\(\s*['\"]?[^#'\"\s])", re.IGNORECASE)


def trusted_svg(svg: str) -> Markup:
    """An SVG figure to inline as markup: the one place greyglass lets HTML past autoescaping.

    The figures are trusted because greyglass draws them: `greyglass.plots`, the dashboard's
    histogram and the report's heatmaps escape every label they write, and the report reads a
    run's figure only from the SVG file its results.json names. A run folder can come from
    someone else, though, so a figure drawn with anything but plain shapes and text is left out.
    """
    tags = {tag.lower() for tag in _TAG.findall(svg)}
    if not svg.startswith("<svg") or not tags <= _SVG_TAGS or _ACTIVE_ATTRIBUTE.search(svg):
        return Markup('<p class="error">This figure was left out: it is not a plain SVG drawing.</p>')
    return Markup(svg)


ENV = Environment(loader=PackageLoader("greyglass", "templates"), autoescape=True, undefined=StrictUndefined,
                  trim_blocks=True, lstrip_blocks=True)
ENV.filters["trusted_svg"] = trusted_svg
ENV.filters["num"] = format  # {{ x|num(".3g") }}: Python's format spec, e.g. ",", ".4%", "+.2f"
ENV.tests["link"] = lambda value: isinstance(value, Link)


def render(name: str, **context: Any) -> str:
    """The page `name` (a path under greyglass/templates) filled with `context`."""
    return ENV.get_template(name).render(**context)


def fragment(name: str, **context: Any) -> Markup:
    """A partial to embed in another page; autoescaped template output is safe HTML as it is."""
    return Markup(render(name, **context))
