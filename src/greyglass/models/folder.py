"""A Hugging Face model folder (`--model PATH`, or a converted GGUF's cache), read so that a
damaged one is a `GreyglassError` naming the file (and, for `config.json`, the field) instead of
whatever transformers raises, and never loads as a model with some weights left random.

The checks run in the order that keeps a hostile folder cheap: the weight files' headers (no
tensor read), a bound on the layer count from them (a config claiming 10**6 layers would take
minutes to build), the config, the model built on the meta device (no memory, whatever the sizes)
and its tensor shapes and dtypes against the headers, the tokenizer, and only then the weights,
which must all be used, all be present and all be finite.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import GreyglassError
from ..json_files import read_json_object

LAYER_FIELDS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")
"""The names config.json gives the layer count under, across the supported families."""
_STRUCTURE_WORDS = ("size", "dim", "layers", "heads", "bias", "tie_", "vocab", "positions", "experts")
"""Words in the names of config fields that shape the weights (besides `n_*` and `num_*`), listed when
the weights do not fit."""


Header = dict[str, tuple[str, str, tuple[int, ...]]]
"""{tensor name: (file name, safetensors dtype such as "F32", shape)} over a folder's safetensors files."""


def load_folder(folder: Path, dtype: torch.dtype) -> tuple[Any, Any]:
    """(model, tokenizer) from a model folder, checked; errors name the folder's file at fault."""
    raw = read_json_object(folder / "config.json")
    header = read_headers(folder)
    _check_layer_count(raw, header, folder)
    config, meta = _build_config(raw, folder)
    _check_shapes(config, meta, raw, header, folder)
    tok = _tokenizer(folder)
    model = _weights(folder, config, dtype)
    _check_tokenizer_fits(tok, model, folder)
    _check_finite(model, header, folder)
    model.eval()
    model.requires_grad_(False)
    return model, tok


def read_headers(folder: Path) -> Header:
    """Every safetensors file's tensor names, dtypes and shapes, from its header alone."""
    from safetensors import SafetensorError, safe_open

    header: Header = {}
    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as f:
                for name in f.keys():
                    piece = f.get_slice(name)
                    header[name] = (path.name, piece.get_dtype(), tuple(piece.get_shape()))
        except (SafetensorError, OSError, ValueError) as e:
            raise GreyglassError(f"{path}: the weights file is damaged ({_first_line(e)}); "
                                 "download or save the model again") from None
    return header


def _check_layer_count(raw: dict[str, Any], header: Header, folder: Path) -> None:
    """A layer holds at least one tensor, so a config with more layers than the files have tensors is wrong."""
    for field in LAYER_FIELDS:
        n = raw.get(field)
        if header and isinstance(n, int) and not isinstance(n, bool) and n > len(header):
            raise GreyglassError(f"{folder / 'config.json'}: field '{field}' is {n}, but the weights hold only "
                                 f"{len(header)} tensors; the config does not belong to these weights")


def _build_config(raw: dict[str, Any], folder: Path):
    """The transformers config of `raw` and its model built on the meta device (the config's test)."""
    model_type = raw.get("model_type")
    if not isinstance(model_type, str):
        raise GreyglassError(f"{folder / 'config.json'}: field 'model_type' must name the architecture "
                             f"(e.g. \"llama\"), not {model_type!r}")
    try:
        config = _config_of(raw)
        return config, _meta_model(config)
    except Exception as e:  # noqa: BLE001 - transformers raises any type for a config it cannot build
        fields = _fields_at_fault(raw)
        named = f" (field {', '.join(repr(f) for f in fields)})" if fields else ""
        raise GreyglassError(f"{folder / 'config.json'}: transformers cannot build a model from it{named}: "
                             f"{type(e).__name__}: {_first_line(e)}") from None


def _config_of(raw: dict[str, Any]):
    from transformers import CONFIG_MAPPING

    if raw["model_type"] not in CONFIG_MAPPING:
        raise ValueError(f"model_type {raw['model_type']!r} is not an architecture this transformers knows")
    return CONFIG_MAPPING[raw["model_type"]].from_dict(dict(raw))


def _meta_model(config):
    """The model of `config` on the meta device: its tensors have shapes but no memory."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def _fields_at_fault(raw: dict[str, Any]) -> list[str]:
    """The top-level fields without which the config builds (each dropped in turn, taking its default)."""
    fields = []
    for key in raw:
        if key == "model_type":
            continue
        try:
            _meta_model(_config_of({k: v for k, v in raw.items() if k != key}))
            fields.append(key)
        except Exception:  # noqa: BLE001 - still failing: not this field alone
            pass
    return fields


def _structure(config) -> str:
    """The config values that shape the weights, e.g. `hidden_size=64, vocab_size=259`."""
    values = config.to_dict()
    return ", ".join(f"{k}={v}" for k, v in sorted(values.items())
                     if isinstance(v, int) and not k.endswith("token_id")
                     and (k.startswith(("n_", "num_")) or any(w in k for w in _STRUCTURE_WORDS)))


def _check_shapes(config, meta, raw: dict[str, Any], header: Header, folder: Path) -> None:
    """Each tensor the model has and the files hold must have the model's shape and a float dtype."""
    if "quantization_config" in raw:  # quantised weights are stored as integers in other shapes
        return
    expected = meta.state_dict()
    for name, (file, dtype, shape) in header.items():
        if name not in expected:
            continue  # unused tensors are found by the load itself, which knows the model's ignore lists
        want, floating = tuple(expected[name].shape), expected[name].is_floating_point()
        if shape != want or (floating and not dtype.startswith(("F", "BF"))):  # integer buffers stay integers
            raise GreyglassError(
                f"{folder / file}: tensor {name!r} is {dtype} {list(shape)}, but config.json makes it a "
                f"{'float ' if floating else ''}tensor of {list(want)}; config.json ({_structure(config)}) "
                "does not belong to these weights")


def _tokenizer(folder: Path):
    from transformers import AutoTokenizer

    files = [p.name for p in sorted(folder.iterdir()) if p.name.startswith(("tokenizer", "special_tokens",
                                                                            "chat_template", "vocab", "merges"))]
    try:
        tok = AutoTokenizer.from_pretrained(str(folder))
        _compile_chat_template(tok)
        return tok
    except Exception as e:  # noqa: BLE001 - the tokenizers library raises bare Exceptions for a damaged file
        raise GreyglassError(f"{folder}: the tokenizer files ({', '.join(files) or 'none found'}) cannot be read: "
                             f"{type(e).__name__}: {_first_line(e)}") from None


def _compile_chat_template(tok) -> None:
    """A chat template that is not Jinja would fail only at the first chat prompt; fail at load instead."""
    from transformers.utils.chat_template_utils import _compile_jinja_template

    template = getattr(tok, "chat_template", None)
    for text in (template.values() if isinstance(template, dict) else [template] if template else []):
        _compile_jinja_template(text)


def _weights(folder: Path, config, dtype: torch.dtype):
    """The model with its weights; a tensor the model needs but the files lack, or one they hold that the
    model does not use, means config and weights do not belong together."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    # No progress bar (a float32 folder loads in under a second), and no load report: what it would
    # warn about (missing or unused tensors) is an error below, in one line.
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        model, info = AutoModelForCausalLM.from_pretrained(str(folder), config=config, dtype=dtype,
                                                           output_loading_info=True)
    except Exception as e:  # noqa: BLE001 - transformers and safetensors raise many types for damaged weights
        raise GreyglassError(f"{folder}: the weights cannot be loaded ({type(e).__name__}: {_first_line(e)}); "
                             f"config.json: {_structure(config)}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    for what, keys in (("lack tensors the model needs", info.get("missing_keys")),
                       ("hold tensors the model does not use", info.get("unexpected_keys")),
                       ("hold tensors of the wrong shape", info.get("mismatched_keys"))):
        if keys:
            names = sorted(k if isinstance(k, str) else k[0] for k in keys)
            raise GreyglassError(f"{folder}: the weight files {what} ({', '.join(names[:4])}"
                                 f"{', ...' if len(names) > 4 else ''}); config.json ({_structure(config)}) "
                                 "does not belong to these weights")
    return model


def _check_tokenizer_fits(tok, model, folder: Path) -> None:
    """Every id the tokenizer gives ordinary text (and its special tokens) must index the embedding."""
    rows = model.get_input_embeddings().weight.shape[0]
    backend = getattr(tok, "backend_tokenizer", None)
    ids = [*tok("a b").input_ids, *(i for i in (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
                                    if isinstance(i, int))]
    if backend is not None:
        ids += backend.get_vocab(with_added_tokens=False).values()
    if ids and max(ids) >= rows:
        raise GreyglassError(f"{folder}: the tokenizer gives token id {max(ids)}, but the model's embedding has "
                             f"{rows} rows; the tokenizer files do not belong to this model")


def _check_finite(model, header: Header, folder: Path) -> None:
    for name, t in model.state_dict().items():
        # A sum is 20x faster than isfinite() and is NaN or infinite whenever an element is; only then
        # (or when finite values overflow it) is every element looked at.
        if (t.is_floating_point() and not torch.isfinite(t.sum(dtype=torch.float32))
                and not torch.isfinite(t).all()):
            where = folder / header[name][0] if name in header else folder
            raise GreyglassError(f"{where}: tensor {name!r} holds NaN or infinite values; the weights are damaged")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__
