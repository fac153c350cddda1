"""`ActivationStore`: read a captured store in shuffled or sequential minibatches.

Shuffled reading visits the shards in a random order, a few at a time, and shuffles the
rows of those shards together; peak memory is `shards_in_memory` shards whatever the size
of the store.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from ..errors import GreyglassError
from .manifest import META_KEYS, read_manifest


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
        if not path.exists():
            raise GreyglassError(f"shard {path} is missing; the store is incomplete, recapture it")
        if path.stat().st_size != entry["bytes"]:
            raise GreyglassError(
                f"shard {path} is corrupt: {path.stat().st_size} bytes, the manifest says {entry['bytes']}; recapture it"
            )
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

    def batches(
        self,
        keys: Sequence[str],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        shards_in_memory: int = 4,
        drop_last: bool = False,
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Minibatches `{key: [batch_size, ...]}` over the whole store (one epoch)."""
        for k in keys:
            if k not in self.sites and k not in META_KEYS:
                raise GreyglassError(f"{self.folder} has no tensor {k!r}; it has {', '.join(self.sites + list(META_KEYS))}")
        n_shards = len(self.manifest["shards"])
        gen = torch.Generator().manual_seed(seed)
        order = torch.randperm(n_shards, generator=gen).tolist() if shuffle else list(range(n_shards))
        group = shards_in_memory if shuffle else 1
        carry: dict[str, torch.Tensor] | None = None
        for start in range(0, n_shards, group):
            parts = [self.read_shard(i, keys) for i in order[start : start + group]]
            if carry is not None:
                parts.insert(0, carry)
            rows = {k: torch.cat([p[k] for p in parts]) for k in keys}
            n = len(rows[keys[0]])
            if shuffle:
                perm = torch.randperm(n, generator=gen)
                rows = {k: v[perm] for k, v in rows.items()}
            full = n - n % batch_size
            for i in range(0, full, batch_size):
                yield {k: v[i : i + batch_size] for k, v in rows.items()}
            carry = {k: v[full:] for k, v in rows.items()} if full < n else None
        if carry is not None and not drop_last:
            yield carry

    def activations(self, site: str | None = None, batch_size: int = 4096, **kw: Any) -> Iterator[torch.Tensor]:
        """Minibatches of one site's activations `[batch_size, d_model]`."""
        name = self.site(site)
        for b in self.batches([name], batch_size, **kw):
            yield b[name]

    def describe(self) -> str:
        """The manifest in human terms, for `greyglass info`."""
        m = self.manifest
        model = m["model"]
        size = sum(s["bytes"] for s in m["shards"])
        lines = [
            f"activation store {self.folder}",
            f"  status      {'complete' if m['complete'] else 'incomplete (continue with --resume)'}",
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
