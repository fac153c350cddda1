"""Reading the datasets that ship inside greyglass (gzip-compressed) and user files alike."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import IO

from ..errors import GreyglassError


def bundled_path(relative: str) -> Path:
    """The bundled file `datasets/<relative>` (stored as `<relative>.gz` unless a license/readme)."""
    root = Path(str(files("greyglass.data").joinpath("datasets")))
    for candidate in (root / f"{relative}.gz", root / relative):
        if candidate.exists():
            return candidate
    raise GreyglassError(f"no bundled dataset file {relative!r} under {root}; see its README.md for the list")


def open_text(path: str | Path) -> IO[str]:
    """Open a text file for reading, decompressing `.gz` transparently."""
    path = Path(path)
    try:
        return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")
    except FileNotFoundError:
        raise GreyglassError(f"{path} does not exist") from None


def jsonl_objects(path: str | Path, expected: str = "a JSON object") -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSONL file, with errors naming the line."""
    with open_text(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise GreyglassError(f"{path} line {n}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise GreyglassError(f"{path} line {n}: expected {expected}")
            yield n, row
