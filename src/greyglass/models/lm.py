"""`LoadedModel`: a transformers causal LM plus what greyglass needs to know about it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .families import Family, family_of, find_blocks
from .sites import Site, parse_site


@dataclass
class LoadedModel:
    """A causal LM with its tokenizer, shape facts, sites and provenance."""

    model: Any
    """The transformers `PreTrainedModel` (a `...ForCausalLM`)."""
    tokenizer: Any
    """The matching transformers tokenizer."""
    spec: str
    """What the user asked for: an embedded name, a path, or a hub id."""
    name: str
    """A short name for display and file metadata."""
    source: str
    """The file or folder the weights came from."""
    sha256: str
    """Content hash of the weights file(s), for provenance."""
    family: Family
    blocks: nn.ModuleList
    n_layers: int
    d_model: int
    is_chat: bool
    """True when the tokenizer has a chat template (an instruct/chat model)."""
    prepend_bos: bool
    """True when the tokenizer starts every text with BOS by default."""

    @classmethod
    def wrap(cls, model: Any, tokenizer: Any, spec: str, name: str, source: str, sha256: str):
        cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        n_layers = getattr(cfg, "num_hidden_layers", None) or cfg.n_layer
        d_model = getattr(cfg, "hidden_size", None) or cfg.n_embd
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        bos = tokenizer.bos_token_id
        probe_ids = tokenizer("a").input_ids
        return cls(
            model=model,
            tokenizer=tokenizer,
            spec=spec,
            name=name,
            source=source,
            sha256=sha256,
            family=family_of(model),
            blocks=find_blocks(model, n_layers),
            n_layers=n_layers,
            d_model=d_model,
            is_chat=getattr(tokenizer, "chat_template", None) is not None,
            prepend_bos=bos is not None and len(probe_ids) > 0 and probe_ids[0] == bos,
        )

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def site(self, text: str | Site) -> Site:
        """Parse and range-check a site name for this model."""
        return parse_site(text, self.n_layers)

    def site_module(self, site: Site) -> nn.Module:
        """The module whose output is the site (for `resid_pre`: whose input)."""
        block = self.blocks[site.layer]
        if site.kind in ("resid_pre", "resid_post"):
            return block
        return block.get_submodule(
            self.family.attn_out if site.kind == "attn_out" else self.family.mlp_out
        )

    @property
    def final_norm(self) -> nn.Module:
        return self.model.get_submodule(self.family.final_norm)

    @property
    def context(self) -> int | None:
        """The most tokens (prompt and generated) the model was built for: its config's
        `max_position_embeddings` (GPT-2's `n_positions`); None when the config does not say."""
        cfg = self.model.config.get_text_config() if hasattr(self.model.config, "get_text_config") else self.model.config
        n = getattr(cfg, "max_position_embeddings", None)
        return n if isinstance(n, int) and n > 0 else None

    @property
    def unembed(self) -> nn.Module:
        """The output projection to vocabulary logits (`W_U`)."""
        return self.model.get_output_embeddings()

    def provenance(self) -> dict[str, Any]:
        """What a run folder records about the model."""
        return {
            "spec": self.spec,
            "name": self.name,
            "source": self.source,
            "sha256": self.sha256,
            "architecture": self.model.config.model_type,
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "dtype": str(self.dtype).removeprefix("torch."),
            "is_chat": self.is_chat,
        }
