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
        raise GreyglassError(f"{path}: not a greyglass activation store manifest "
                             f"(its field 'format' is not {FORMAT!r})")
    _check_fields(manifest, _FIELDS, path, "")
    for part, fields in (("model", _MODEL_FIELDS), ("corpus", _CORPUS_FIELDS)):
        _check_fields(manifest[part], fields, path, f"{part}.")
    for i, shard in enumerate(manifest["shards"]):
        _check_fields(shard, _SHARD_FIELDS, path, f"shards[{i}].")
        if shard["file"] != Path(shard["file"]).name or shard["rows"] < 0 or shard["bytes"] < 0:
            raise GreyglassError(f"{path}: shards[{i}] must name a file in the store, with rows and bytes >= 0")
    if not manifest["sites"] or not all(isinstance(s, str) for s in manifest["sites"]) or manifest["d_model"] <= 0:
        raise GreyglassError(f"{path}: 'sites' must be a non-empty list of site names and 'd_model' > 0")
    return manifest


# What the readers (ActivationStore, `info`, --resume) use, with its JSON type; a manifest edited by
# hand or damaged says which field is wrong rather than failing later with a KeyError.
_FIELDS = {"sites": list, "d_model": int, "dtype": str, "context_size": int, "batch_windows": int, "shard_tokens": int,
           "keep_bos": bool, "n_tokens": int, "tokens_requested": int, "windows_done": int, "complete": bool,
           "shards": list, "model": dict, "corpus": dict, "created": str, "greyglass_version": str}
_MODEL_FIELDS = {"name": str, "architecture": str, "n_layers": int, "d_model": int, "sha256": str}
_CORPUS_FIELDS = {"corpus": (str, type(None)), "split": str, "seed": int, "fingerprint": str}
_SHARD_FIELDS = {"file": str, "rows": int, "bytes": int}


def _check_fields(obj: Any, fields: dict[str, Any], path: Path, prefix: str) -> None:
    if not isinstance(obj, dict):
        raise GreyglassError(f"{path}: '{prefix.rstrip('.')}' must be an object")
    for key, kind in fields.items():
        value = obj.get(key)
        # bool is an int in Python, not in JSON
        if key not in obj or not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise GreyglassError(f"{path}: field '{prefix}{key}' is missing or of the wrong type ({value!r}); "
                                 "the store is damaged, recapture it")
