"""Reading the datasets that ship inside greyglass (gzip-compressed) and user files alike.

User files are streamed line by line and never read whole: a line longer than `MAX_TEXT_CHARS`
(a JSONL row, a CSV row, a .txt corpus document, a .json item file) is refused with an error
naming the file and line before more of it is read, so a hostile or broken file (one 100 MB
line, no newline at all) cannot exhaust memory. Bytes that are not UTF-8 and damaged .gz
files are errors naming the file and line too.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import IO

from ..errors import GreyglassError
from ..json_files import parse_json

MAX_TEXT_CHARS = int(float(os.environ.get("GREYGLASS_MAX_TEXT_MB", "16")) * 2**20)
"""The longest line (JSONL/CSV row), .txt corpus document or .json file greyglass reads, in
characters: 16 Mi by default, `GREYGLASS_MAX_TEXT_MB` changes it. Longer is an error, not a read."""
_READ_ERRORS = (UnicodeDecodeError, EOFError, OSError, zlib.error)  # not UTF-8, a truncated or damaged .gz


def bundled_path(relative: str) -> Path:
    """The bundled file `datasets/<relative>` (stored as `<relative>.gz` unless a license/readme)."""
    root = Path(str(files("greyglass.data").joinpath("datasets")))
    for candidate in (root / f"{relative}.gz", root / relative):
        if candidate.exists():
            return candidate
    raise GreyglassError(f"no bundled dataset file {relative!r} under {root}; see its README.md for the list")


def open_text(path: str | Path, newline: str | None = None) -> IO[str]:
    """Open a text file for reading, decompressing `.gz` transparently; `newline` as for `open`."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            return gzip.open(path, "rt", encoding="utf-8", newline=newline)
        return open(path, encoding="utf-8", newline=newline)
    except FileNotFoundError:
        raise GreyglassError(f"{path} does not exist") from None
    except OSError as e:  # a folder, no permission
        raise GreyglassError(f"{path} cannot be read ({e.strerror})") from None


def text_lines(path: str | Path, newline: str = "\n") -> Iterator[tuple[int, str]]:
    """(line number, line) of a text file, streamed; a line over `MAX_TEXT_CHARS`, bytes that are
    not UTF-8 or a damaged .gz is a GreyglassError naming the file and line. Lines end at `\n`
    only (JSON Lines; a `\r` is JSON whitespace), or as `csv` needs with `newline=""`."""
    with open_text(path, newline) as f:
        n = 0
        while True:
            n += 1
            try:
                line = f.readline(MAX_TEXT_CHARS + 1)
            except _READ_ERRORS as e:
                raise GreyglassError(f"{path} line {n}: cannot be read as UTF-8 text ({e}); "
                                     "save it as UTF-8 (a .gz file must be whole)") from None
            if not line:
                return
            if len(line) > MAX_TEXT_CHARS and not line.endswith("\n"):
                raise _too_long(path, f"line {n} is")
            yield n, line


def read_text(path: str | Path) -> str:
    """A whole text file (a .txt document, a .json file) of at most `MAX_TEXT_CHARS` characters."""
    with open_text(path) as f:
        try:
            text = f.read(MAX_TEXT_CHARS + 1)
        except _READ_ERRORS as e:
            raise GreyglassError(f"{path}: cannot be read as UTF-8 text ({e}); "
                                 "save it as UTF-8 (a .gz file must be whole)") from None
    if len(text) > MAX_TEXT_CHARS:
        raise _too_long(path, "the file is")
    return text


def _too_long(path: str | Path, what: str) -> GreyglassError:
    return GreyglassError(f"{path}: {what} longer than {MAX_TEXT_CHARS:,} characters, so it is not read; "
                          "split it (one document or row per line), or raise GREYGLASS_MAX_TEXT_MB")


def jsonl_objects(path: str | Path, expected: str = "a JSON object") -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSONL file, with errors naming the line."""
    for n, line in text_lines(path):
        if not line.strip():
            continue
        row = parse_json(line, f"{path} line {n}")
        if not isinstance(row, dict):
            raise GreyglassError(f"{path} line {n}: expected {expected}")
        yield n, row
