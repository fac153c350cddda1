"""llama.cpp control vectors: a steering direction as the GGUF file `llama-cli --control-vector` reads.

The format is the one repeng's `ControlVector.export_gguf` writes and llama.cpp's
`common_control_vector_load` reads: `general.architecture = "controlvector"`,
`controlvector.model_hint` (the model's architecture, e.g. `llama`), `controlvector.layer_count`
(how many direction tensors the file holds) and one 1-D F32 tensor `direction.{k}  # [d_model]`
per steered layer. llama.cpp reads only the tensors; the two keys say what the file is for.

Layer numbering. llama.cpp adds `direction.k` (times the strength given on its command line)
to the output of block k, 0-based, right after the block's last residual add (`l_out`), at
every position, prompt included. That is TransformerLens's `blocks.k.hook_resid_post`
(transformers' `hidden_states[k + 1]`), where greyglass's steering adds too, also at every
position. So a direction at `blocks.L.hook_resid_post` is written as `direction.L`, and one at
`blocks.L.hook_resid_pre` (the same stream) as `direction.{L-1}`. llama.cpp never steers block 0's
output (it rejects `direction.0`) and has no attention- or MLP-output points, so those sites are
a GreyglassError.

Scale. The tensor is `steering_delta(lm, direction, 1.0)`: the unit direction in the model's own
space times the typical residual norm at the site (docs/steer.md), the vector `greyglass steer`
adds at coefficient 1. So `--control-vector-scaled FILE:S` in llama.cpp steers like
`greyglass steer --coef S`, and `--control-vector FILE` like `--coef 1`.
"""

from __future__ import annotations

from pathlib import Path

from ..atomic import atomic_path
from ..directions import Direction
from ..errors import GreyglassError
from ..models.lm import LoadedModel
from ..models.sites import parse_site
from .apply import steering_delta

ARCH = "controlvector"


def control_vector_layer(site: str) -> int:
    """The llama.cpp layer index `k` of `direction.k` that steers `site` (see the module docstring)."""
    parsed = parse_site(site)
    layer = {"resid_post": parsed.layer, "resid_pre": parsed.layer - 1}.get(parsed.kind)
    if layer is None:
        raise GreyglassError(f"a llama.cpp control vector steers the residual stream between blocks; {site} is not "
                             "one (use a resid_post site)")
    if layer < 1:
        raise GreyglassError(f"llama.cpp cannot steer {site}: it never adds a control vector to block 0's output "
                             "(direction.0 is rejected); build the vector at layer 1 or later")
    return layer


def write_control_vector(lm: LoadedModel, direction: Direction, path: str | Path) -> Path:
    """Write `direction` as a llama.cpp control vector at `path` (atomically), scaled so llama.cpp's strength
    is greyglass's `--coef`."""
    import gguf

    path = Path(path)
    if path.suffix != ".gguf":
        raise GreyglassError(f"{path}: a llama.cpp control vector is a .gguf file; name it e.g. {path.stem}.gguf")
    if path.is_dir():
        raise GreyglassError(f"{path} is a folder; give the path of the .gguf file to write")
    layer = control_vector_layer(direction.site)
    delta = steering_delta(lm, direction, 1.0).detach().float().cpu().numpy()  # [d_model]
    try:
        with atomic_path(path) as tmp:
            writer = gguf.GGUFWriter(tmp, ARCH)
            writer.add_string(f"{ARCH}.model_hint", lm.model.config.model_type)
            writer.add_uint32(f"{ARCH}.layer_count", 1)
            writer.add_tensor(f"direction.{layer}", delta)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
            writer.close()
    except OSError as e:
        raise GreyglassError(f"{path}: cannot write the control vector ({e.strerror or e}); choose a writable "
                             "path for --export-gguf") from None
    return path
