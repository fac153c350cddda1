"""SAE folders that SAELens reads, and `load_sae`: the one way a folder (greyglass's or SAELens's) becomes an SAE.

A saved SAE is a folder:
- `cfg.json`: SAELens's config (v6 keys, with the pre-v6 flat keys alongside so older
  SAELens versions read it too);
- `sae_weights.safetensors`: `W_enc [d_in, d_sae]`, `W_dec [d_sae, d_in]`, `b_enc`, `b_dec`,
  and `threshold [d_sae]` for JumpReLU (BatchTopK is saved as a JumpReLU);
- `sparsity.safetensors`: key `sparsity`, log10 firing rate of each latent;
- `frequency.safetensors` (greyglass only, with a frequency-aware cost): key `fire_rate`, the
  firing-rate average the cost weights come from, so inference selects latents as training did;
- `training.json` (greyglass only): the full `SAEConfig` (nested: `arch`, `freq_cost`; folders
  written before the configs nested hold it flat, and load the same), training settings and provenance.
The input normalisation is folded into the weights, so the saved SAE reads raw activations.

What SAELens computes from the folder is greyglass's encoder except for one case: a TopK SAE
trained with a frequency-aware cost, which selects latents by `pre - cost` and which SAELens's
TopK (selecting by `pre`) cannot express; `saelens_encoder` gives what a SAELens user gets.
BatchTopK with the cost is exact in SAELens: its per-latent thresholds hold the cost.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from ..atomic import atomic_dir
from ..errors import GreyglassError
from ..json_files import read_json_object
from .architectures import create_sae
from .config import ARCHITECTURES, FreqCostConfig, SAEConfig, TopKConfig
from .model import SparseAutoencoder

CFG = "cfg.json"
WEIGHTS = "sae_weights.safetensors"
SPARSITY = "sparsity.safetensors"
TRAINING = "training.json"
FREQUENCY = "frequency.safetensors"
SAELENS_TOPK_NOTE = ("trained with a frequency-aware cost: greyglass selects the k latents by pre-activation "
                     "minus each latent's cost (frequency.safetensors); SAELens selects by pre-activation alone")

_SAELENS_ARCH = {"relu": "standard", "topk": "topk", "jumprelu": "jumprelu"}
_FROM_SAELENS = {"standard": "relu", "relu": "relu", "topk": "topk", "jumprelu": "jumprelu"}


def saelens_cfg(cfg: SAEConfig) -> dict[str, Any]:
    """SAELens's `cfg.json` for a folded SAE."""
    arch = _SAELENS_ARCH[cfg.architecture]
    layer = cfg.hook_name.split(".")[1] if cfg.hook_name.startswith("blocks.") else None
    metadata = {"model_name": cfg.model_name, "hook_name": cfg.hook_name, "hook_head_index": None,
                "context_size": cfg.context_size, "prepend_bos": cfg.prepend_bos,
                "sae_lens_training_version": None, "dataset_path": None}
    out: dict[str, Any] = {"architecture": arch, "d_in": cfg.d_in, "d_sae": cfg.d_sae, "dtype": "float32",
                           "device": "cpu", "apply_b_dec_to_input": True, "normalize_activations": "none",
                           "reshape_activations": "none", "metadata": metadata}
    if arch == "topk":
        out["k"] = cfg.arch.k
    # pre-v6 SAELens reads these flat keys
    out.update({k: v for k, v in metadata.items()},
               hook_layer=int(layer) if layer is not None and layer.isdigit() else 0,
               activation_fn_str="topk" if arch == "topk" else "relu",
               activation_fn_kwargs={"k": cfg.arch.k} if arch == "topk" else {},
               finetuning_scaling_factor=False)
    if differs_in_saelens(cfg):
        metadata["greyglass_note"] = SAELENS_TOPK_NOTE  # v6 keeps unknown metadata; not a flat key for pre-v6
    return out


def differs_in_saelens(cfg: SAEConfig) -> bool:
    """Whether SAELens computes another encoder from this SAE's folder than greyglass does."""
    return cfg.architecture == "topk" and cfg.freq_cost.on


def saelens_encoder(sae: SparseAutoencoder) -> SparseAutoencoder | None:
    """The SAE a SAELens user gets from this SAE's folder (folded, eval mode), or None when it is
    the SAE itself: a frequency-aware TopK becomes a plain TopK (SAELens has no selection cost)."""
    if not differs_in_saelens(sae.cfg):
        return None
    flat = sae.folded()
    plain = create_sae(flat.cfg.with_updates(freq_cost=FreqCostConfig())).to(flat.W_enc.device)
    plain.load_state_dict({n: p for n, p in flat.named_parameters()})
    return plain.eval()


def save_sae(sae: SparseAutoencoder, folder: str | Path, sparsity: Tensor | None = None,
             training: dict[str, Any] | None = None) -> Path:
    """Write `folder` atomically (a crash leaves the old folder or none, never half of one)."""
    folder = Path(folder)
    flat = sae.folded()
    tensors = {name: p.detach().float().cpu().contiguous() for name, p in flat.named_parameters()}
    with atomic_dir(folder) as tmp:
        save_file(tensors, str(tmp / WEIGHTS))
        if sparsity is not None:
            save_file({"sparsity": sparsity.detach().float().cpu().contiguous()}, str(tmp / SPARSITY))
        if flat.cfg.freq_cost.on:
            save_file({"fire_rate": flat.fire_rate.detach().float().cpu().contiguous()}, str(tmp / FREQUENCY))
        (tmp / CFG).write_text(json.dumps(saelens_cfg(flat.cfg), indent=2) + "\n")
        meta = {"format": "greyglass-sae", "version": 1, "sae": asdict(sae.cfg), **(training or {})}
        if differs_in_saelens(sae.cfg):
            meta["saelens_reads"] = SAELENS_TOPK_NOTE
        (tmp / TRAINING).write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return folder


def load_sae(folder: str | Path) -> SparseAutoencoder:
    """Load a greyglass or SAELens (standard, TopK, JumpReLU) folder, in eval mode."""
    folder = Path(folder)
    if not (folder / CFG).is_file():
        raise GreyglassError(f"{folder} is not an SAE folder: {CFG} is missing")
    raw = read_json_object(folder / CFG)
    cfg = _config_from_saelens(raw, folder)
    tensors = _read_weights(folder / WEIGHTS)
    w_enc = tensors.get("W_enc")
    if w_enc is None or tuple(w_enc.shape) != (cfg.d_in, cfg.d_sae):  # before create_sae allocates what cfg.json says
        raise GreyglassError(f"{folder / WEIGHTS}: W_enc is {'missing' if w_enc is None else list(w_enc.shape)}, "
                             f"cfg.json (d_in {cfg.d_in}, d_sae {cfg.d_sae}) needs [{cfg.d_in}, {cfg.d_sae}]")
    sae = create_sae(cfg)
    expected = {name: tuple(p.shape) for name, p in sae.named_parameters()}
    for name, shape in expected.items():
        if name not in tensors:
            raise GreyglassError(f"{folder / WEIGHTS}: tensor {name} is missing (it holds {', '.join(sorted(tensors))})")
        if tuple(tensors[name].shape) != shape:
            raise GreyglassError(f"{folder / WEIGHTS}: {name} has shape {list(tensors[name].shape)}, "
                                 f"cfg.json (d_in {cfg.d_in}, d_sae {cfg.d_sae}) needs {list(shape)}")
        if not torch.isfinite(tensors[name]).all():
            raise GreyglassError(f"{folder / WEIGHTS}: {name} contains NaN or infinite values; retrain or re-download")
    if raw.get("apply_b_dec_to_input", True) is False:
        # SAELens without b_dec on the input: x @ W_enc + b_enc == (x - b_dec) @ W_enc + (b_enc + b_dec @ W_enc)
        tensors["b_enc"] = tensors["b_enc"] + tensors["b_dec"] @ tensors["W_enc"]
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_(tensors[name])
        if cfg.freq_cost.on:
            sae.fire_rate.copy_(_read_fire_rate(folder / FREQUENCY, cfg.d_sae))
    return sae.eval()


def _read_fire_rate(path: Path, d_sae: int) -> Tensor:
    """The saved firing-rate average `[d_sae]` behind a frequency-aware SAE's cost."""
    rate = _read_weights(path).get("fire_rate")
    if rate is None or tuple(rate.shape) != (d_sae,) or not torch.isfinite(rate).all():
        raise GreyglassError(f"{path}: needs a finite tensor fire_rate of shape [{d_sae}]; "
                             "save the SAE again from its checkpoint")
    return rate


def load_sparsity(folder: str | Path) -> Tensor | None:
    """The saved log10 firing rates `[d_sae]`, or None when the folder has none."""
    path = Path(folder) / SPARSITY
    if not path.is_file():
        return None
    rates = _read_weights(path).get("sparsity")
    d_sae = read_json_object(Path(folder) / CFG).get("d_sae")
    if rates is None or tuple(rates.shape) != (d_sae,) or rates.isnan().any():
        raise GreyglassError(f"{path}: needs a tensor sparsity of shape [d_sae] = [{d_sae}] without NaN; "
                             "remove the file or save the SAE again")
    return rates


def read_training(folder: str | Path) -> dict[str, Any]:
    """greyglass's `training.json` ({} for a SAELens folder)."""
    path = Path(folder) / TRAINING
    return read_json_object(path) if path.is_file() else {}


def trained_config(folder: Path, key: str = "sae") -> SAEConfig | None:
    """The full `SAEConfig` under `key` of `training.json` ("sae": the saved SAE's; "trained_sae": the
    one a calibrated SAE came from), or None (a SAELens folder, no such key); a value that does not fit
    (an edit by hand, a damaged file) is an error naming the file."""
    path = folder / TRAINING
    saved = read_training(folder).get(key)
    if not saved:
        return None
    try:
        return SAEConfig.from_dict(saved, str(path))
    except (GreyglassError, TypeError, ValueError, AttributeError) as e:  # from_dict does not check JSON types
        raise GreyglassError(f"{path}: {key!r} does not hold a valid SAE config ({e}); "
                             "remove training.json to load the folder as SAELens does") from None


def _read_weights(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise GreyglassError(f"{path} is missing; an SAE folder needs {WEIGHTS}")
    try:
        return {k: v.float() for k, v in load_file(str(path)).items()}
    except (SafetensorError, OSError) as e:
        raise GreyglassError(f"{path} is not a readable safetensors file ({e})") from None


def _config_from_saelens(raw: dict[str, Any], folder: Path) -> SAEConfig:
    """An `SAEConfig` for the (folded) weights in `folder`, from SAELens's keys."""
    where = folder / CFG
    for key in ("metadata", "activation_fn_kwargs"):
        if not isinstance(raw.get(key) or {}, dict):
            raise GreyglassError(f"{where}: {key} must be an object")
    meta = {**raw, **(raw.get("metadata") or {})}
    arch_name = raw.get("architecture") or ("topk" if raw.get("activation_fn_str") == "topk" else "standard")
    if not isinstance(arch_name, str) or arch_name not in _FROM_SAELENS:
        raise GreyglassError(f"{where}: architecture {arch_name!r} is not supported; "
                             f"greyglass loads {', '.join(_FROM_SAELENS)}")
    norm = raw.get("normalize_activations") or "none"
    if norm != "none":
        raise GreyglassError(f"{where}: normalize_activations = {norm!r} needs a scaling factor this folder "
                             "does not hold; fold it into the weights and set it to 'none'")
    if raw.get("rescale_acts_by_decoder_norm"):
        raise GreyglassError(f"{where}: rescale_acts_by_decoder_norm = true (SAELens v6 TopK) is not supported; "
                             "fold the decoder norms into W_enc, b_enc and W_dec and set it to false")
    for key in ("d_in", "d_sae"):
        if type(raw.get(key)) is not int or raw[key] <= 0:
            raise GreyglassError(f"{where}: {key} is missing or not a positive integer")
    arch = ARCHITECTURES[_FROM_SAELENS[arch_name]]()
    k = raw.get("k") or (raw.get("activation_fn_kwargs") or {}).get("k")
    if isinstance(arch, TopKConfig):
        if type(k) is not int or k <= 0:
            raise GreyglassError(f"{where}: a topk SAE needs a positive integer k")
        arch = replace(arch, k=min(k, raw["d_sae"]))
    facts = {key: meta[key] for key, kind in (("model_name", str), ("hook_name", str), ("context_size", int),
                                              ("prepend_bos", bool)) if type(meta.get(key)) is kind}
    trained = trained_config(folder)
    if trained is not None and trained.architecture == arch.name:
        arch = replace(trained.arch, **({"k": arch.k} if isinstance(arch, TopKConfig) else {}))
    # a folder saved before the cost travelled with the SAE was always evaluated without it
    freq_cost = trained.freq_cost if trained is not None and (folder / FREQUENCY).is_file() else FreqCostConfig()
    try:
        base = trained if trained is not None else SAEConfig(arch=arch, d_in=raw["d_in"], d_sae=raw["d_sae"])
        return replace(base, arch=arch, d_in=raw["d_in"], d_sae=raw["d_sae"], freq_cost=freq_cost, norm_scale=1.0,
                       b_dec_init="zeros", **facts)
    except GreyglassError as e:
        raise GreyglassError(f"{where}: {e}") from None
