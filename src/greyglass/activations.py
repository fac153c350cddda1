"""Activations of corpus text, from the model on the fly or from an activation store: the one source.

Every stage that reads activations of a corpus gets them here as `Windows`: whole windows
`[B, T, d]` at one or several sites, with their token ids, documents and a mask of the rows
that count. The mask is off at each window's first position (BOS, or the attention-sink token
without BOS: outliers no SAE trains on, no statistic counts, no store keeps unless captured with
`keep_bos`), at outlier rows elsewhere (`without_outliers`: a norm above `OUTLIER_NORM_RATIO` times
the batch's median, such as SmolLM2's second position after BOS in some windows) and wherever a
store holds no row.

- `model_windows`: the model runs over the corpus's windows, stopping after the deepest site
  (capture, on-the-fly training, SAE evaluation, feature statistics). One pass.
- `store_windows`: a store cut back into its windows, its shards in written order or in a
  seeded order (training). One pass; memory is one shard.
- `take_tokens`: the first windows holding at least n counted rows (whole batches).
- `shuffled_rows`: training rows, a shuffled view of the counted rows of passes over windows:
  whenever a buffer holds `buffer_rows` rows, a random half of it (seeded) is emitted as
  `{site: [batch_size, d]}` batches. Endless, or a number of epochs after which the rest is
  emitted. The stream is the same for the same seed, so training resumes by skipping batches.

Activations stay in the dtype they were computed or stored in, on the CPU.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from .data.corpus import CorpusConfig, sink_flags, windows
from .errors import GreyglassError
from .models.hooks import run_to_sites
from .models.lm import LoadedModel
from .store.manifest import META_KEYS
from .store.reader import ActivationStore

Rows = dict[str, Tensor]
"""`{site: [n, d]}`: one batch of training rows, the same positions at every site."""

OUTLIER_NORM_RATIO = 10.0
"""A row whose norm, at any site, is above this many times the median norm of its batch's counted rows
there is left out, as the first position is. Some models give a few tokens besides the first a residual
norm tens of times the rest (SmolLM2-135M at layer 15: 27 rows in 216k at 10-171x the median, each
a window's second or third token); a batch-level top-k SAE spends hundreds of latents on each and its
training loss spikes (docs/experiments/absorption-showdown.md). Ordinary rows stay far below: at that
site one row in 216k lies between 5x and 10x."""


class Windows(NamedTuple):
    """A batch of whole windows with their activations at some sites."""

    tokens: Tensor  # [B, T] token ids (0 where a store holds no row)
    acts: dict[str, Tensor]  # {site: [B, T, d]} (zeros where a store holds no row)
    docs: Tensor  # [B, T] the document each token came from (-1 where a store holds no row)
    mask: Tensor  # [B, T] True where the row counts: not the first position, not an outlier, not missing

    def rows(self) -> Rows:
        """The counted rows `{site: [n, d]}`, window by window."""
        return {s: a[self.mask] for s, a in self.acts.items()}

    def part(self, lo: int, hi: int) -> Windows:
        """Windows `lo` to `hi`."""
        return Windows(self.tokens[lo:hi], {s: a[lo:hi] for s, a in self.acts.items()}, self.docs[lo:hi],
                       self.mask[lo:hi])


def model_windows(lm: LoadedModel, sites: Sequence[str], corpus: CorpusConfig, batch_windows: int = 8,
                  skip: int = 0, part: tuple[int, int] = (0, 1)) -> Iterator[Windows]:
    """One pass of the model over the corpus's windows, `batch_windows` per forward, after the first `skip`;
    with `part = (rank, ranks)` only every ranks-th forward pass from the rank-th (a process's share)."""
    names = [lm.site(s).name for s in sites]
    stream = itertools.islice(windows(lm.tokenizer, corpus, lm.prepend_bos), skip, None)
    rank, ranks = part
    for i, chunk in enumerate(iter(lambda: list(itertools.islice(stream, batch_windows)), [])):
        if i % ranks != rank:
            continue
        tokens = torch.tensor([w.tokens for w in chunk])  # [B, T]
        acts = run_to_sites(lm, tokens.to(lm.device), names)
        acts = {s: acts[s].cpu() for s in names}
        yield Windows(tokens, acts, torch.tensor([w.docs for w in chunk]),
                      without_outliers(acts.values(), ~torch.tensor([w.is_sink for w in chunk])))


def without_sink(mask: Tensor) -> Tensor:
    """`mask [B, T]` of real tokens with every row's first position, the attention sink, turned off."""
    return mask & ~torch.tensor(sink_flags(mask.shape[1]), device=mask.device)


def without_outliers(acts: Iterable[Tensor], mask: Tensor) -> Tensor:
    """`mask [B, T]` with the outlier rows turned off: those whose norm in any of `acts` (each `[B, T, d]`) is
    above `OUTLIER_NORM_RATIO` times the median norm of that tensor's rows where `mask` is on."""
    out = mask.clone()
    if not mask.any():  # no counted row, no median
        return out
    for a in acts:
        norms = a.float().norm(dim=-1)  # [B, T]
        out &= norms <= OUTLIER_NORM_RATIO * norms[mask].median()
    return out


def store_windows(store: ActivationStore, sites: Sequence[str], batch_windows: int = 8,
                  shard_seed: int | None = None, part: tuple[int, int] = (0, 1)) -> Iterator[Windows]:
    """One pass over a store's windows (a window restarts where `pos` does not grow); shards in written order,
    or with `shard_seed` in a seeded random order (windows are never split between shards); with
    `part = (rank, ranks)` only every ranks-th shard of that order from the rank-th (a process's share)."""
    names = [store.site(s) for s in sites]
    n_shards = len(store.manifest["shards"])
    rank, ranks = part
    if ranks > max(1, n_shards):
        raise GreyglassError(f"{store.folder} holds {n_shards} shards, fewer than the {ranks} processes reading it; "
                             "capture it again with a smaller --shard-tokens, or use fewer processes")
    order = (torch.randperm(n_shards, generator=torch.Generator().manual_seed(shard_seed)).tolist()
             if shard_seed is not None else list(range(n_shards)))[rank::ranks]
    shards = (_shard_windows(store.read_shard(i, [*names, *META_KEYS]), names,
                             store.manifest["context_size"]) for i in order)
    return _rebatched(shards, batch_windows)


def _shard_windows(shard: dict[str, Tensor], sites: list[str], T: int) -> Windows:
    """A shard's rows put back at their (window, position)."""
    pos = shard["pos"].long()  # [n] position of each row in its window
    starts = torch.ones_like(pos, dtype=torch.bool)
    starts[1:] = pos[1:] <= pos[:-1]
    window = starts.long().cumsum(0) - 1  # [n] window of each row
    B = int(window[-1]) + 1
    tokens, docs = torch.zeros(B, T, dtype=torch.long), torch.full((B, T), -1, dtype=torch.long)
    present = torch.zeros(B, T, dtype=torch.bool)
    tokens[window, pos], docs[window, pos], present[window, pos] = shard["token_ids"].long(), shard["doc"].long(), True
    acts = {}
    for s in sites:
        acts[s] = torch.zeros(B, T, shard[s].shape[1], dtype=shard[s].dtype)  # [B, T, d]
        acts[s][window, pos] = shard[s]
    present[:, 0] = False  # the first position is left out even where a store kept it (`keep_bos`)
    return Windows(tokens, acts, docs, without_outliers(acts.values(), present))


def _rebatched(parts: Iterable[Windows], batch_windows: int) -> Iterator[Windows]:
    """The windows of `parts` in batches of `batch_windows` (the last may be smaller); only a batch that
    spans two parts is copied, the others are views."""
    held: Windows | None = None  # fewer than batch_windows windows, waiting for the next part
    for part in parts:
        if held is not None:
            need = batch_windows - len(held.tokens)
            held, part = _cat([held, part.part(0, need)]), part.part(need, len(part.tokens))
            if len(held.tokens) < batch_windows:
                continue
            yield held
        n = len(part.tokens)
        full = n - n % batch_windows
        for lo in range(0, full, batch_windows):
            yield part.part(lo, lo + batch_windows)
        held = part.part(full, n) if full < n else None
    if held is not None:
        yield held


def _cat(parts: list[Windows]) -> Windows:
    if len(parts) == 1:
        return parts[0]
    return Windows(torch.cat([p.tokens for p in parts]), {s: torch.cat([p.acts[s] for p in parts])
                                                         for s in parts[0].acts},
                   torch.cat([p.docs for p in parts]), torch.cat([p.mask for p in parts]))


def rows_as_windows(rows: Rows) -> Windows:
    """Rows that are not text (an SAE's decoder rows), each a window of one counted position."""
    n = len(next(iter(rows.values())))
    return Windows(torch.zeros(n, 1, dtype=torch.long), {s: r[:, None] for s, r in rows.items()},
                   torch.full((n, 1), -1, dtype=torch.long), torch.ones(n, 1, dtype=torch.bool))


def take_tokens(batches: Iterable[Windows], n_tokens: int) -> Iterator[Windows]:
    """The batches until they hold at least `n_tokens` counted rows (whole batches, so a little more)."""
    done = 0
    for batch in batches:
        yield batch
        done += int(batch.mask.sum())
        if done >= n_tokens:  # before asking for the next batch, which may cost a forward pass
            return


def shuffled_rows(passes: Callable[[int], Iterable[Windows]], batch_size: int, buffer_rows: int, seed: int = 0,
                  epochs: int | None = None, drop_last: bool = True) -> Iterator[Rows]:
    """Batches of the counted rows of `passes(epoch)` for epoch 0, 1, ... (endless when `epochs` is None).

    Rows collect in a buffer; whenever it holds `buffer_rows`, a random half of it (in whole
    batches) is emitted in random order, the rest kept to mix with what follows. After the last
    epoch the rest is emitted too (its last, short batch unless `drop_last`), so one epoch emits
    every counted row exactly once."""
    buffer = _ShuffleBuffer(buffer_rows, torch.Generator().manual_seed(seed))
    for epoch in itertools.count() if epochs is None else range(epochs):
        seen = 0
        for batch in passes(epoch):
            seen += buffer.add(batch.rows())
            if buffer.n >= buffer_rows:
                yield from _batches(buffer.take((buffer.n // 2) // batch_size * batch_size), batch_size)
        if epoch == 0 and seen < batch_size:
            raise GreyglassError(f"one pass over the activations gives {seen} rows, fewer than one batch of "
                                 f"{batch_size}; use more text (a larger corpus or store) or a smaller --batch-size")
    yield from _batches(buffer.take(buffer.n if not drop_last else buffer.n // batch_size * batch_size), batch_size)


class _ShuffleBuffer:
    """Rows in no particular order in one preallocated block per site; `take` removes a random subset.

    Each row is copied in once and out once (and at most once moved inside): permuting the whole
    buffer at every emission costs several times more."""

    def __init__(self, capacity: int, gen: torch.Generator):
        self.capacity, self.gen, self.n = capacity, gen, 0
        self.block: Rows = {}  # {site: [size, d]}, rows 0..n-1 in use

    def add(self, rows: Rows) -> int:
        m = len(next(iter(rows.values())))
        if not self.block or self.n + m > len(next(iter(self.block.values()))):  # the first rows, or a larger chunk
            size = max(self.capacity, self.n + m) + m
            self.block = {s: torch.cat([self.block[s][:self.n] if self.block else r[:0],
                                        r.new_empty(size - self.n, *r.shape[1:])]) for s, r in rows.items()}
        for s, r in rows.items():
            self.block[s][self.n:self.n + m] = r
        self.n += m
        return m

    def take(self, k: int) -> Rows:
        """`k` rows drawn without replacement, in random order; kept rows beyond the new end fill their places."""
        perm = torch.randperm(self.n, generator=self.gen)
        taken, kept, left = perm[:k], perm[k:], self.n - k
        holes, movers = taken[taken < left], kept[kept >= left]  # as many of each
        out = {s: b.index_select(0, taken) for s, b in self.block.items()}
        for b in self.block.values():
            b[holes] = b.index_select(0, movers)
        self.n = left
        return out


def _batches(rows: Rows, batch_size: int) -> Iterator[Rows]:
    n = len(next(iter(rows.values()), ()))
    for lo in range(0, n, batch_size):
        yield {s: r[lo:lo + batch_size] for s, r in rows.items()}
