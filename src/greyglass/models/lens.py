"""The logit lens of directions in the residual stream (SAE decoder rows, meta-SAE rows).

The logit lens sends a direction through the model's final norm and unembedding:
the output tokens it pushes up (promoted) and down (suppressed) when it fires, ignoring the
layers in between. The norm is applied without its bias (GPT-2 and GPT-NeoX LayerNorms have
one), as in the logit-lens literature: the bias is added whatever the residual holds, so it
would give every row the same offset `beta @ W_U` and crowd the same tokens into every list.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .lm import LoadedModel


class LogitLens(NamedTuple):
    promoted: Tensor  # [d_sae, n] token ids, strongest first
    promoted_logits: Tensor  # [d_sae, n]
    suppressed: Tensor  # [d_sae, n]
    suppressed_logits: Tensor  # [d_sae, n]


def logit_lens(lm: LoadedModel, W_dec: Tensor, n: int = 10, chunk: int = 1024) -> LogitLens:
    """Top promoted and suppressed tokens of every decoder row `W_dec [d_sae, d_model]`."""
    parts: list[tuple[Tensor, ...]] = []
    with torch.inference_mode():
        for lo in range(0, W_dec.shape[0], chunk):
            rows = W_dec[lo:lo + chunk].to(lm.device, lm.dtype)[:, None, :]  # [c, 1, d] as a batch of one-token "sequences"
            logits = lm.unembed(scale_only_norm(lm.final_norm, rows))[:, 0].float()  # [c, vocab]
            logits = logits - logits.mean(-1, keepdim=True)  # only differences between tokens matter
            up, down = logits.topk(n, dim=-1), (-logits).topk(n, dim=-1)
            parts.append((up.indices.cpu(), up.values.cpu(), down.indices.cpu(), -down.values.cpu()))
    return LogitLens(*(torch.cat(p) for p in zip(*parts)))


def scale_only_norm(norm: nn.Module, x: Tensor) -> Tensor:
    """The final norm without its additive bias; RMSNorms (Llama, Gemma, Qwen2) have none and run as they are."""
    if isinstance(norm, nn.LayerNorm) and norm.bias is not None:
        return F.layer_norm(x, norm.normalized_shape, norm.weight, None, norm.eps)
    return norm(x)
