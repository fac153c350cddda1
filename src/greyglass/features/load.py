"""The SAE interface the feature tools need, and loading a saved SAE folder.

The feature tools work with any module that looks like `SAELike`: greyglass's own
`SparseAutoencoder` satisfies it, and so does `FolderSAE`, the small reader below for
SAELens-format folders (`cfg.json` + `sae_weights.safetensors`). `load_sae` is the one place a
folder on disk becomes an SAE.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from ..errors import GreyglassError

CFG = "cfg.json"
WEIGHTS = "sae_weights.safetensors"
ARCHITECTURES = ("standard", "topk", "jumprelu")


class SAEConfigLike(Protocol):
    d_in: int
    d_sae: int
    hook_name: str
    """The site the SAE reads, TransformerLens form (blocks.15.hook_resid_post)."""


class SAELike(Protocol):
    """What the feature tools use from an SAE."""

    cfg: SAEConfigLike
    W_dec: Tensor  # [d_sae, d_in]
    b_dec: Tensor  # [d_in]

    def encode(self, x: Tensor) -> Tensor:  # [N, d_in] -> [N, d_sae], dense, >= 0
        ...


@dataclass(frozen=True)
class FolderSAEConfig:
    """The parts of a SAELens `cfg.json` the feature tools need."""

    d_in: int
    d_sae: int
    architecture: str
    hook_name: str
    model_name: str = ""
    k: int | None = None
    """TopK: latents kept per token."""


class FolderSAE(nn.Module):
    """An SAE read from a SAELens folder: standard (ReLU), TopK or JumpReLU, inference only."""

    def __init__(self, cfg: FolderSAEConfig, tensors: dict[str, Tensor]):
        super().__init__()
        self.cfg = cfg
        self.W_enc = nn.Parameter(tensors["W_enc"], requires_grad=False)  # [d_in, d_sae]
        self.W_dec = nn.Parameter(tensors["W_dec"], requires_grad=False)  # [d_sae, d_in]
        self.b_enc = nn.Parameter(tensors["b_enc"], requires_grad=False)  # [d_sae]
        self.b_dec = nn.Parameter(tensors["b_dec"], requires_grad=False)  # [d_in]
        threshold = tensors.get("threshold", torch.zeros(cfg.d_sae))
        self.register_buffer("threshold", threshold)  # [d_sae]

    def encode(self, x: Tensor) -> Tensor:
        pre = (x.to(self.W_enc.dtype) - self.b_dec) @ self.W_enc + self.b_enc  # [N, d_sae]
        if self.cfg.architecture == "topk":
            top = pre.topk(self.cfg.k or 1, dim=-1)
            return torch.zeros_like(pre).scatter(-1, top.indices, F.relu(top.values))
        if self.cfg.architecture == "jumprelu":
            return pre * (pre > self.threshold)
        return F.relu(pre)

    def decode(self, latents: Tensor) -> Tensor:
        return latents @ self.W_dec + self.b_dec


def load_sae(path: str | Path) -> SAELike:
    """Load the SAE saved in folder `path` (SAELens layout), in eval mode on the CPU."""
    folder = Path(path)
    raw = _read_cfg(folder / CFG)
    meta = {**raw, **(raw.get("metadata") or {})}
    arch = raw.get("architecture") or ("topk" if raw.get("activation_fn_str") == "topk" else "standard")
    if arch not in ARCHITECTURES:
        raise GreyglassError(f"{folder / CFG}: architecture {arch!r} is not supported; use one of "
                             f"{', '.join(ARCHITECTURES)}")
    for key in ("d_in", "d_sae"):
        if not isinstance(raw.get(key), int):
            raise GreyglassError(f"{folder / CFG}: field {key!r} is missing or not an integer")
    if not meta.get("hook_name"):
        raise GreyglassError(f"{folder / CFG}: metadata.hook_name (the site, e.g. blocks.15.hook_resid_post) is missing")
    k = raw.get("k") or (raw.get("activation_fn_kwargs") or {}).get("k")
    if arch == "topk" and not isinstance(k, int):
        raise GreyglassError(f"{folder / CFG}: a topk SAE needs an integer 'k'")
    cfg = FolderSAEConfig(d_in=raw["d_in"], d_sae=raw["d_sae"], architecture=arch, hook_name=meta["hook_name"],
                          model_name=str(meta.get("model_name") or ""), k=k)
    tensors = _read_weights(folder / WEIGHTS)
    shapes = {"W_enc": (cfg.d_in, cfg.d_sae), "W_dec": (cfg.d_sae, cfg.d_in), "b_enc": (cfg.d_sae,), "b_dec": (cfg.d_in,)}
    if arch == "jumprelu":
        shapes["threshold"] = (cfg.d_sae,)
    for name, shape in shapes.items():
        if name not in tensors:
            raise GreyglassError(f"{folder / WEIGHTS}: tensor {name} is missing (it holds {', '.join(sorted(tensors))})")
        if tuple(tensors[name].shape) != shape:
            raise GreyglassError(f"{folder / WEIGHTS}: {name} has shape {list(tensors[name].shape)}; cfg.json "
                                 f"(d_in {cfg.d_in}, d_sae {cfg.d_sae}) needs {list(shape)}")
    if raw.get("apply_b_dec_to_input", True) is False:
        # (x - b_dec) @ W_enc + b_enc' == x @ W_enc + b_enc  when  b_enc' = b_enc + b_dec @ W_enc
        tensors["b_enc"] = tensors["b_enc"] + tensors["b_dec"] @ tensors["W_enc"]
    return FolderSAE(cfg, tensors).eval()


def sae_site(sae: SAELike) -> str:
    return sae.cfg.hook_name


def check_sae_fits(sae: SAELike, d_model: int, where: str = "the model") -> None:
    if sae.cfg.d_in != d_model:
        raise GreyglassError(f"the SAE reads d_in = {sae.cfg.d_in} but {where} has d_model = {d_model}; "
                             "it was trained for another model or site")


def _read_cfg(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise GreyglassError(f"{path.parent} is not an SAE folder: {CFG} is missing")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise GreyglassError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(data, dict):
        raise GreyglassError(f"{path}: expected a JSON object")
    return data


def _read_weights(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise GreyglassError(f"{path} is missing; an SAE folder needs {WEIGHTS}")
    try:
        return {k: v.float() for k, v in load_file(str(path)).items()}
    except (SafetensorError, OSError) as e:
        raise GreyglassError(f"{path} is not a readable safetensors file ({e})") from None
