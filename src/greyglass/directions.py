"""A direction in a site's activation space: a probe, a steering vector, or an SAE latent.

One file format serves all of them, so a probe trained by `greyglass probe` can steer, and a
steering vector can monitor an eval. A direction is saved as a folder with
`direction.safetensors` (`vector [d_model]`, and optionally `mean [d_model]` and
`scale [d_model]` for the normalisation applied before projecting) and `direction.json`
(site, kind, bias, provenance).

    score(x) = ((x - mean) / scale) @ vector + bias
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .atomic import atomic_dir
from .errors import GreyglassError
from .json_files import read_json_object

TENSORS = "direction.safetensors"
META = "direction.json"


@dataclass
class Direction:
    """A vector at a site, with the normalisation and bias a probe needs to score."""

    vector: torch.Tensor  # [d_model]
    site: str
    """TransformerLens site name, e.g. blocks.12.hook_resid_post."""
    kind: str
    """How it was made: logistic, mass_mean, pca, mean_diff, sae_latent, contrast_pair, ..."""
    bias: float = 0.0
    mean: torch.Tensor | None = None  # [d_model]
    scale: torch.Tensor | None = None  # [d_model]
    metadata: dict[str, Any] = field(default_factory=dict)
    """Provenance: model sha256, data fingerprint, layer, training metrics, ..."""

    @property
    def d_model(self) -> int:
        return int(self.vector.shape[0])

    def score(self, acts: torch.Tensor) -> torch.Tensor:
        """Project activations `[..., d_model]` onto the direction -> `[...]`."""
        x = acts.to(self.vector.dtype)
        if self.mean is not None:
            x = x - self.mean
        if self.scale is not None:
            x = x / self.scale
        return x @ self.vector + self.bias

    def model_space(self) -> torch.Tensor:
        """The direction in the model's own activation space `[d_model]`: `vector / scale`.

        `score` grows fastest along it; for a probe trained on standardised features this,
        not `vector`, is what to add to the residual stream to push the probe's reading.
        """
        return self.vector if self.scale is None else self.vector / self.scale

    def unit(self) -> torch.Tensor:
        """`model_space()` as a unit vector `[d_model]`: the direction steering adds (`greyglass.steer.apply`).

        Normalised in the model's own space, not the probe's standardised one, where it
        would point elsewhere.
        """
        v = self.model_space()
        return v / v.norm().clamp_min(1e-12)

    def save(self, folder: str | Path) -> Path:
        tensors = {"vector": self.vector.detach().float().contiguous()}
        for name in ("mean", "scale"):
            t = getattr(self, name)
            if t is not None:
                tensors[name] = t.detach().float().contiguous()
        meta = {"site": self.site, "kind": self.kind, "bias": self.bias, "d_model": self.d_model,
                "metadata": self.metadata}
        with atomic_dir(folder) as tmp:
            save_file(tensors, str(tmp / TENSORS))
            (tmp / META).write_text(json.dumps(meta, indent=2, default=str) + "\n")
        return Path(folder)

    @classmethod
    def load(cls, folder: str | Path) -> "Direction":
        folder = Path(folder)
        if not (folder / META).exists() or not (folder / TENSORS).exists():
            raise GreyglassError(f"{folder} is not a saved direction (needs {META} and {TENSORS})")
        meta = read_json_object(folder / META)
        try:
            tensors = load_file(str(folder / TENSORS))
        except (SafetensorError, OSError) as e:
            raise GreyglassError(f"{folder / TENSORS}: cannot read the direction ({e})") from None
        vector = tensors.get("vector")
        if vector is None or vector.ndim != 1 or not vector.is_floating_point():
            raise GreyglassError(f"{folder / TENSORS}: needs a 1-D floating-point tensor 'vector'")
        for name in ("vector", "mean", "scale"):
            t = tensors.get(name)
            if t is not None and (t.shape != vector.shape or not t.is_floating_point() or not torch.isfinite(t).all()):
                raise GreyglassError(f"{folder / TENSORS}: '{name}' must be finite floats of shape {list(vector.shape)}")
        if "scale" in tensors and (tensors["scale"] == 0).any():
            raise GreyglassError(f"{folder / TENSORS}: 'scale' has zeros (it divides the activations)")
        _check_meta(meta, folder / META)
        return cls(vector=vector, site=meta["site"], kind=meta["kind"], bias=float(meta.get("bias", 0.0)),
                   mean=tensors.get("mean"), scale=tensors.get("scale"), metadata=meta.get("metadata", {}))

    def check_model(self, d_model: int) -> None:
        """Raise if this direction cannot be applied to a model of width `d_model`."""
        if d_model != self.d_model:
            raise GreyglassError(f"direction at {self.site} has d_model {self.d_model}, but the model has {d_model}; "
                                 "it was made for another model")


def _check_meta(meta: dict[str, Any], path: Path) -> None:
    """`direction.json`'s fields have the types `Direction` needs (bias and metadata may be left out)."""
    checks = {"site": ("a string", lambda v: isinstance(v, str)), "kind": ("a string", lambda v: isinstance(v, str)),
              "bias": ("a finite number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                       and math.isfinite(v)),
              "metadata": ("an object", lambda v: isinstance(v, dict))}
    for key, (what, ok) in checks.items():
        if (key in meta or key in ("site", "kind")) and not ok(meta.get(key)):
            raise GreyglassError(f"{path}: field '{key}' must be {what}, found {meta.get(key)!r}")
