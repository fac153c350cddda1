"""`ActivationStore`: a captured store's manifest and its shards, read one at a time with clear errors.

Batches of activations come from `greyglass.activations`: `store_windows` cuts the shards back
into windows (one shard in memory), `shuffled_rows` makes training rows of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from ..errors import GreyglassError
from .manifest import read_manifest


class ActivationStore:
    """A folder written by `capture`: `manifest.json` plus safetensors shards."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.manifest: dict[str, Any] = read_manifest(self.folder)

    @property
    def sites(self) -> list[str]:
        return list(self.manifest["sites"])

    @property
    def d_model(self) -> int:
        return int(self.manifest["d_model"])

    @property
    def n_tokens(self) -> int:
        return int(self.manifest["n_tokens"])

    @property
    def complete(self) -> bool:
        return bool(self.manifest["complete"])

    def site(self, site: str | None = None) -> str:
        """Resolve a site name (long or short form) to one this store holds."""
        if site is None:
            if len(self.sites) > 1:
                raise GreyglassError(f"{self.folder} holds several sites ({', '.join(self.sites)}); choose one")
            return self.sites[0]
        from ..models.sites import parse_site

        name = parse_site(site).name
        if name not in self.sites:
            raise GreyglassError(f"{self.folder} has no site {name}; it holds {', '.join(self.sites)}")
        return name

    def read_shard(self, i: int, keys: Sequence[str]) -> dict[str, torch.Tensor]:
        """Some tensors of shard i, with a clear error if it is missing or corrupt."""
        entry = self.manifest["shards"][i]
        path = self.folder / entry["file"]
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise GreyglassError(f"shard {path} is missing; the store is incomplete, recapture it") from None
        except OSError as e:  # e.g. a name in the manifest longer than the file system allows
            raise GreyglassError(f"shard {path} cannot be read ({e.strerror}); recapture it") from None
        if size != entry["bytes"]:
            raise GreyglassError(f"shard {path} is corrupt: {size} bytes, the manifest says {entry['bytes']}; recapture it")
        try:
            with safe_open(str(path), framework="pt") as f:
                tensors = {k: f.get_tensor(k) for k in keys}
        except (SafetensorError, OSError) as e:
            raise GreyglassError(f"shard {path} is corrupt ({e}); recapture it") from None
        for k, t in tensors.items():
            shape = (entry["rows"], self.d_model) if k in self.sites else (entry["rows"],)
            if tuple(t.shape) != shape:
                raise GreyglassError(f"shard {path} is corrupt: {k} has shape {list(t.shape)}, the manifest says "
                                     f"{list(shape)}; recapture it")
        return tensors

    def summary(self) -> str:
        """The store in plain words from its manifest, also while unfinished: the terminal text of `greyglass info`
        for a store that is not a finished capture run (an interrupted capture, or one `capture()` wrote alone)."""
        m = self.manifest
        model = m["model"]
        size = sum(s["bytes"] for s in m["shards"])
        lines = [
            f"activation store {self.folder}: {'complete' if m['complete'] else 'incomplete (continue with --resume)'}",
            f"  model       {model['name']} ({model['architecture']}, {model['n_layers']} layers, "
            f"d_model {model['d_model']}), weights sha256 {model['sha256'][:12]}",
            f"  sites       {', '.join(m['sites'])}",
            f"  tokens      {m['n_tokens']:,} of {m['tokens_requested']:,} requested, "
            f"context {m['context_size']}, first rows (BOS/sink) {'kept' if m['keep_bos'] else 'dropped'}",
            f"  corpus      {m['corpus']['corpus'] or 'bundled English Wikipedia sample'} "
            f"(split {m['corpus']['split']}, seed {m['corpus']['seed']}, fingerprint {m['corpus']['fingerprint'][:12]})",
            f"  storage     {len(m['shards'])} shards, {size / 2**20:.1f} MiB, {m['dtype']}",
            f"  created     {m['created']} by greyglass {m['greyglass_version']}",
        ]
        return "\n".join(lines)
