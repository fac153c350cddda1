"""Two models read side by side: the check that they can be compared, and the same windows of text for both.

Diffing compares the two models token by token, so they must split text into the same tokens (the same
vocabulary, the same special tokens) and, for a crosscoder or a residual difference, have the same width;
`check_pair` stops with the mismatch named. `paired_chunks` cuts the corpus once into windows that both
models then run on, with each token's document (the unit intervals resample).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import Tensor

from ..data.corpus import CorpusConfig, windows
from ..errors import GreyglassError
from ..models.lm import LoadedModel


def check_pair(lm_a: LoadedModel, lm_b: LoadedModel, same_depth: bool = False) -> None:
    """Raise a GreyglassError naming what differs when `lm_a` and `lm_b` cannot be compared token by token."""
    names = f"model A ({lm_a.spec}) and model B ({lm_b.spec})"
    if lm_a.d_model != lm_b.d_model:
        raise GreyglassError(f"{names} differ in width: d_model {lm_a.d_model} vs {lm_b.d_model}; a residual "
                             "difference or a crosscoder needs models of one width (e.g. a model and its fine-tune)")
    if same_depth and lm_a.n_layers != lm_b.n_layers:
        raise GreyglassError(f"{names} differ in depth: {lm_a.n_layers} vs {lm_b.n_layers} layers")
    vocab_a, vocab_b = lm_a.tokenizer.get_vocab(), lm_b.tokenizer.get_vocab()
    if vocab_a != vocab_b:
        only_a = sorted(set(vocab_a) - set(vocab_b))[:3]
        moved = sorted(t for t in set(vocab_a) & set(vocab_b) if vocab_a[t] != vocab_b[t])[:3]
        raise GreyglassError(f"{names} have different tokenizers: {len(vocab_a)} vs {len(vocab_b)} tokens"
                             + (f"; only in A: {only_a}" if only_a else "")
                             + (f"; different ids for {moved}" if moved else "")
                             + "; diffing compares the models token by token, so they must share a tokenizer")
    for special in ("bos_token_id", "eos_token_id"):
        a, b = getattr(lm_a.tokenizer, special), getattr(lm_b.tokenizer, special)
        if a != b:
            raise GreyglassError(f"{names} have different tokenizers: {special} {a} vs {b}")
    if lm_a.prepend_bos != lm_b.prepend_bos:
        raise GreyglassError(f"{names} have different tokenizers: only {'A' if lm_a.prepend_bos else 'B'} starts "
                             "text with BOS")


class Chunk(NamedTuple):
    """Windows both models read: token ids, each token's document, and which tokens count (not the sink)."""

    ids: Tensor  # [B, T]
    docs: Tensor  # [B, T] document index of each token
    mask: Tensor  # [B, T] False at each window's first position (BOS or attention sink)


def paired_chunks(lm_a: LoadedModel, corpus: CorpusConfig, n_tokens: int, batch_windows: int) -> Iterator[Chunk]:
    """Chunks of `batch_windows` windows until `n_tokens` counted tokens (whole windows); the models share the
    tokenizer (`check_pair`), so A's windows are B's."""
    stream = windows(lm_a.tokenizer, corpus, lm_a.prepend_bos)
    done = 0
    while done < n_tokens and (chunk := list(itertools.islice(stream, batch_windows))):
        mask = ~torch.tensor([w.is_sink for w in chunk])
        yield Chunk(torch.tensor([w.tokens for w in chunk]), torch.tensor([w.docs for w in chunk]), mask)
        done += int(mask.sum())
    if done == 0:
        raise GreyglassError("the corpus gave no windows; use a longer corpus or a smaller --context-size")
