"""Reading the datasets that ship inside greyglass (gzip-compressed) and user files alike."""

from __future__ import annotations

import gzip
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
