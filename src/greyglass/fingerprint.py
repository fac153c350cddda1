"""Content hashes for provenance: which weights file, which data, exactly."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

_CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def files_sha256(paths: list[Path], hasher: Callable[[Path], str] = file_sha256) -> str:
    """One sha256 over several files (names and contents), order-sensitive."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{path.name}:{hasher(path)}".encode())
    return digest.hexdigest()


def json_sha256(obj: Any) -> str:
    """sha256 of a JSON-serialisable object, independent of key order."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def cache_dir() -> Path:
    """Where greyglass caches converted models and file hashes (`$GREYGLASS_CACHE`)."""
    return Path(os.environ.get("GREYGLASS_CACHE", Path.home() / ".cache" / "greyglass"))


def cached_file_sha256(path: Path) -> str:
    """A file's sha256, remembered by (path, size, mtime) so big files are hashed once."""
    from .atomic import write_json

    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    index = cache_dir() / "sha256.json"
    try:
        known = json.loads(index.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        known = {}
    if key not in known:
        known[key] = file_sha256(path)
        write_json(index, known)
    return known[key]
