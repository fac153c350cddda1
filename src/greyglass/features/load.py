"""The SAE interface the feature tools need, and loading a saved SAE folder.

The feature tools work with any module that looks like `SAELike`; greyglass's own
`SparseAutoencoder` satisfies it. `load_sae` is the one place a folder on disk becomes an SAE:
it delegates to `greyglass.sae.io`, which reads greyglass and SAELens folders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from torch import Tensor

from ..errors import GreyglassError


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


def load_sae(path: str | Path) -> SAELike:
    """Load a saved SAE folder (greyglass or SAELens layout) for inference, on the CPU."""
    from ..sae.io import load_sae as load_sparse_autoencoder

    return load_sparse_autoencoder(path).eval()


def sae_site(sae: SAELike) -> str:
    return sae.cfg.hook_name


def check_sae_fits(sae: SAELike, d_model: int, where: str = "the model") -> None:
    if sae.cfg.d_in != d_model:
        raise GreyglassError(f"the SAE reads d_in = {sae.cfg.d_in} but {where} has d_model = {d_model}; "
                             "it was trained for another model or site")
