"""The activation store's `manifest.json`: what was captured, from what, and which shards exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import GreyglassError
from ..json_files import read_json_object

MANIFEST = "manifest.json"
FORMAT = "greyglass-activations"
META_KEYS = ("token_ids", "doc", "pos")
"""Per-row metadata stored beside the activations: token id, document index, window position."""

# Settings that must match for --resume to continue a capture.
RESUME_KEYS = ("sites", "d_model", "dtype", "context_size", "batch_windows", "shard_tokens", "keep_bos")


def shard_name(i: int) -> str:
    return f"shard_{i:05d}.safetensors"


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """Load and sanity-check a store's manifest, with errors that name the file."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        what = "does not exist" if not Path(folder).exists() else f"has no {MANIFEST}"
        raise GreyglassError(f"activation store {folder} {what}; create one with `greyglass capture`")
    manifest = read_json_object(path)
    if manifest.get("format") != FORMAT:
        raise GreyglassError(f"{path}: not a greyglass activation store manifest")
    return manifest
