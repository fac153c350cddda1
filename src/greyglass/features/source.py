"""Where activations for the feature statistics come from: the model on the fly, or a store.

Both yield `Batch(tokens [B, T], acts [B, T, d_model], mask [B, T])` of whole windows, so the
statistics can show each token's neighbours. Each window's first position (BOS, or the
attention-sink token) is masked out: its activations are outliers that would fill every
latent's top list.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import Tensor

from ..data.corpus import CorpusConfig, windows
from ..errors import GreyglassError
from ..models import LoadedModel, run_to_sites
from ..store import ActivationStore


class Batch(NamedTuple):
    tokens: Tensor  # [B, T] token ids
    acts: Tensor  # [B, T, d_model] activations at the SAE's site
    mask: Tensor  # [B, T] True where the token counts (not BOS, not padding)


def corpus_batches(lm: LoadedModel, site: str, corpus: CorpusConfig, n_tokens: int,
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


def store_batches(store: ActivationStore, site: str, n_tokens: int, batch_windows: int = 8) -> Iterator[Batch]:
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


def text_latents(lm: LoadedModel, sae, texts: list[str], batch_size: int = 16) -> Tensor:
    """Each text's maximum activation of every latent over its tokens (BOS excluded) -> `[n_texts, d_sae]`."""
    site = lm.site(sae.cfg.hook_name).name
    out = []
    for lo in range(0, len(texts), batch_size):
        encoded = [lm.tokenizer(t).input_ids for t in texts[lo:lo + batch_size]]
        T = max(len(ids) for ids in encoded)
        ids = torch.full((len(encoded), T), lm.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros(len(encoded), T, dtype=torch.bool)
        for i, row in enumerate(encoded):  # right padding: causal attention keeps real tokens unaffected
            ids[i, :len(row)], mask[i, :len(row)] = torch.tensor(row), True
        counted = mask.clone()
        if lm.prepend_bos:
            counted[:, 0] = mask.sum(1) == 1  # a BOS-only text keeps its one token
        acts = run_to_sites(lm, ids.to(lm.device), [site], attention_mask=mask.long().to(lm.device))[site].float().cpu()
        out.append(encode_batch(sae, Batch(ids, acts, counted)).amax(dim=1))
    return torch.cat(out)
