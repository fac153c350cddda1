"""The dtypes a model runs in and activations are stored in, by name: the one table.

The names are torch's own attribute names, so the table is the tuple of names; importing it
does not import torch (configs and `--help` read it), `torch_dtype` does when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

from ..errors import GreyglassError

if TYPE_CHECKING:
    import torch

DtypeName = Literal["float32", "bfloat16", "float16"]
DTYPES: tuple[str, ...] = get_args(DtypeName)


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype called `name`, one of `DTYPES`."""
    if name not in DTYPES:
        raise GreyglassError(f"dtype {name!r} is not allowed; choose one of {', '.join(DTYPES)}")
    import torch  # only here: the names above are read where torch must not be imported

    return getattr(torch, name)
