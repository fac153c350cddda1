"""Token ids: lists of them as one padded batch, and single tokens as text.

Right padding keeps every sequence at the positions it would have alone, and causal attention
never looks ahead at the padding, so the real tokens' activations are unchanged; the last real
token is at `mask.sum(1) - 1`. Left padding lines the last tokens up at column -1 (where
generation and answer scoring continue from), but then the model needs position ids that skip
the padding (`mask.cumsum(-1) - 1`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor

Side = Literal["left", "right"]


class Padded(NamedTuple):
    ids: Tensor  # [B, T] long
    mask: Tensor  # [B, T] long: 1 at real tokens, 0 at padding


def pad(seqs: Sequence[Sequence[int]], pad_id: int, side: Side = "right") -> Padded:
    """Token-id lists padded with `pad_id` to the longest one, on the given side."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for row, seq in enumerate(seqs):
        cols = slice(0, len(seq)) if side == "right" else slice(width - len(seq), width)
        ids[row, cols] = torch.tensor(seq, dtype=torch.long)
        mask[row, cols] = 1
    return Padded(ids, mask)


def token_strings(tokenizer, ids) -> dict[int, str]:
    """Each distinct token id decoded on its own (ids < 0 are skipped)."""
    unique = sorted({int(i) for i in ids if int(i) >= 0})
    return dict(zip(unique, tokenizer.batch_decode([[i] for i in unique])))
