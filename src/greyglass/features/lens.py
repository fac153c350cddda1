"""Logit lens for latents, and a short automatic label for each.

The logit lens sends a latent's decoder row through the model's final norm and unembedding:
the output tokens it pushes up (promoted) and down (suppressed) when it fires, ignoring the
layers in between. The norm is applied without its bias (GPT-2 and GPT-NeoX LayerNorms have
one), as in the logit-lens literature: the bias is added whatever the residual holds, so it
would give every latent the same offset `beta @ W_U` and crowd the same tokens into every list. The label is built from what it fires on (the centre tokens of its top
contexts) and what it promotes, so people can search and skim before reading contexts.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.lm import LoadedModel


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


def token_strings(tokenizer, ids) -> dict[int, str]:
    """Each distinct token id decoded on its own (ids < 0 are skipped)."""
    unique = sorted({int(i) for i in ids if int(i) >= 0})
    return dict(zip(unique, tokenizer.batch_decode([[i] for i in unique])))


def auto_label(fires_on: list[str], promoted: list[str], n: int = 3) -> str:
    """'bridge, Bridge -> Gate, span': the commonest top-context tokens, then the top promoted ones."""
    common = [t for t, _ in Counter(s.strip() for s in fires_on if _readable(s)).most_common(n)]
    pushes = [s.strip() for s in promoted if _readable(s)][:n]
    if not fires_on:
        return "(never fired)"
    fired = ", ".join(common) or "(whitespace or partial characters)"
    return fired + (" -> " + ", ".join(pushes) if pushes else "")


def _readable(token: str) -> bool:
    """Skip tokens that are blank, partial UTF-8 (decoded as U+FFFD) or control characters."""
    text = token.strip()
    return bool(text) and "\ufffd" not in text and text.isprintable()
