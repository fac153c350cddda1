"""Where each architecture family keeps its blocks, and which module output is which site.

A site's value is read from a module's output (or, for `resid_pre`, a block's input), so
each family only needs to say which submodule of a block produces what TransformerLens calls
`hook_attn_out` and `hook_mlp_out`: the tensor that is added to the residual stream. Gemma 2
and 3 normalise the attention and MLP outputs before adding them, so their sites sit on the
post-norms, as in TransformerLens.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..errors import GreyglassError


@dataclass(frozen=True)
class Family:
    """Submodule names inside one block, and the path of the final norm."""

    attn_out: str
    mlp_out: str
    final_norm: str


_LLAMA_LIKE = Family("self_attn", "mlp", "model.norm")
_GEMMA_POSTNORM = Family("post_attention_layernorm", "post_feedforward_layernorm", "model.norm")

FAMILIES: dict[str, Family] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _GEMMA_POSTNORM,
    "gemma3": _GEMMA_POSTNORM,
    "gemma3_text": _GEMMA_POSTNORM,
    "gpt2": Family("attn", "mlp", "transformer.ln_f"),
    "gpt_neox": Family("attention", "mlp", "gpt_neox.final_layer_norm"),
}


def family_of(model: nn.Module) -> Family:
    """The Family for a transformers model, by its `config.model_type`."""
    model_type = model.config.model_type  # type: ignore[union-attr]
    if model_type not in FAMILIES:
        raise GreyglassError(
            f"architecture {model_type!r} has no site mapping yet; supported: "
            f"{', '.join(sorted(FAMILIES))}. Add an entry to greyglass.models.families.FAMILIES."
        )
    return FAMILIES[model_type]


def find_blocks(model: nn.Module, n_layers: int) -> nn.ModuleList:
    """The ModuleList holding the transformer blocks (the one with n_layers entries)."""
    for _, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers:
            return module
    raise GreyglassError(f"could not find the {n_layers} transformer blocks in this model")
