"""Figures a run saved as SVG files, inlined into the report (which must not link to files)."""

from __future__ import annotations

from pathlib import Path


def run_svg(folder: Path, name: str | None) -> str:
    """The SVG file `name` in the run folder, or "" when there is none."""
    path = folder / name if isinstance(name, str) else None
    if path is None or path.suffix != ".svg" or not path.is_file():
        return ""
    text = path.read_text()
    return text[text.index("<svg"):] if "<svg" in text else ""
