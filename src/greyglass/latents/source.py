"""Where activations for the feature statistics come from: the model on the fly, or a store.

Both yield `Batch(tokens [B, T], acts [B, T, d_model], mask [B, T])` of whole windows, so the
statistics can show each token's neighbours. Each window's first position (BOS, or the
attention-sink token) is masked out: its activations are outliers that would fill every
latent's top list. Text -> latents (`text_latents`, the browser's per-token view, concept
search) leaves out the same position, for models with or without BOS.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import Tensor

from ..data.corpus import CorpusConfig, sink_flags, windows
from ..errors import GreyglassError
from ..models.hooks import run_to_sites
from ..models.lm import LoadedModel
from ..models.tokens import pad
from ..store.reader import ActivationStore


class Batch(NamedTuple):
    tokens: Tensor  # [B, T] token ids
    acts: Tensor  # [B, T, d_model] activations at the SAE's site
    mask: Tensor  # [B, T] True where the token counts (not BOS, not padding)


def model_windows(lm: LoadedModel, site: str, corpus: CorpusConfig, n_tokens: int,
                   batch_windows: int = 8) -> Iterator[Batch]:
    """Run the model over corpus windows up to `site`, until `n_tokens` tokens were counted."""
    done = 0
    chunk: list = []
    for window in windows(lm.tokenizer, corpus, lm.prepend_bos):
        chunk.append(window)
        if len(chunk) < batch_windows:
            continue
        batch = _run(lm, site, chunk)
        chunk = []
        yield batch
        done += int(batch.mask.sum())
        if done >= n_tokens:
            return
    if chunk:
        yield _run(lm, site, chunk)


def _run(lm: LoadedModel, site: str, chunk: list) -> Batch:
    tokens = torch.tensor([w.tokens for w in chunk])  # [B, T]
    acts = run_to_sites(lm, tokens.to(lm.device), [site])[lm.site(site).name].float().cpu()
    mask = ~torch.tensor([w.is_sink for w in chunk])
    return Batch(tokens, acts, mask)


def store_windows(store: ActivationStore, site: str, n_tokens: int, batch_windows: int = 8) -> Iterator[Batch]:
    """Read a store in its written order and cut it back into windows (a window restarts where `pos` does)."""
    name = store.site(site)
    done = 0
    for i in range(len(store.manifest["shards"])):
        shard = store.read_shard(i, [name, "token_ids", "pos"])
        for batch in _windows_of(shard[name].float(), shard["token_ids"].long(), shard["pos"].long(), batch_windows):
            yield batch
            done += int(batch.mask.sum())
            if done >= n_tokens:
                return
    if done == 0:
        raise GreyglassError(f"activation store {store.folder} holds no tokens")


def _windows_of(acts: Tensor, ids: Tensor, pos: Tensor, batch_windows: int) -> Iterator[Batch]:
    starts = torch.ones_like(pos, dtype=torch.bool)
    starts[1:] = pos[1:] <= pos[:-1]
    window = starts.long().cumsum(0) - 1  # [rows] window of each row
    first = starts.nonzero().flatten()  # [n_windows] its first row
    col = torch.arange(len(pos)) - first[window]
    n_windows, T = int(window[-1]) + 1, int(col.max()) + 1
    for lo in range(0, n_windows, batch_windows):
        rows = (window >= lo) & (window < lo + batch_windows)
        B = min(batch_windows, n_windows - lo)
        tokens = torch.zeros(B, T, dtype=torch.long)
        out = torch.zeros(B, T, acts.shape[1])
        mask = torch.zeros(B, T, dtype=torch.bool)
        w, c = window[rows] - lo, col[rows]
        tokens[w, c], out[w, c], mask[w, c] = ids[rows], acts[rows], True
        yield Batch(tokens, out, mask)


def encode_batch(sae, batch: Batch) -> Tensor:
    """The SAE's latents `[B, T, d_sae]` for a batch, zero where the mask is off."""
    B, T, d = batch.acts.shape
    with torch.inference_mode():
        lat = sae.encode(batch.acts.reshape(B * T, d).to(sae.W_dec.device, sae.W_dec.dtype)).float().cpu()
    return lat.reshape(B, T, -1) * batch.mask[..., None]


def sequence_latents(lm: LoadedModel, sae, encoded: list[list[int]]) -> tuple[Tensor, Tensor]:
    """Latents at every position of token-id lists, run as one right-padded batch.

    Returns `(latents [B, T, d_sae], counted [B, T])`; latents are zero where `counted` is off:
    at padding and at each sequence's first position, the attention sink (BOS, or without one
    the first token), which the SAE never saw in training (`Window.is_sink`).
    """
    site = lm.site(sae.cfg.hook_name).name
    ids, mask = pad(encoded, lm.tokenizer.pad_token_id)  # right padding: causal attention keeps real tokens unaffected
    counted = without_sink(mask.bool())
    acts = run_to_sites(lm, ids.to(lm.device), [site], attention_mask=mask.to(lm.device))[site].float().cpu()
    return encode_batch(sae, Batch(ids, acts, counted)), counted


def without_sink(mask: Tensor) -> Tensor:
    """`mask [B, T]` of real tokens with every row's first position, the attention sink, turned off."""
    return mask & ~torch.tensor(sink_flags(mask.shape[1]))


def text_latents(lm: LoadedModel, sae, texts: list[str], batch_size: int = 16) -> Tensor:
    """Each text's maximum activation of every latent over its tokens -> `[n_texts, d_sae]`.

    The first position (BOS, or the first token without one) is left out, so a text of one
    token, all sink, gets zeros.
    """
    out = [sequence_latents(lm, sae, [lm.tokenizer(t).input_ids for t in texts[lo:lo + batch_size]])[0].amax(dim=1)
           for lo in range(0, len(texts), batch_size)]
    return torch.cat(out)
