"""Per-latent statistics in one streaming pass, with memory bounded by d_sae, not by tokens.

For every latent: how often it fires (density), the sum and maximum of its activations (mean
when active), a histogram of its nonzero activations over fixed log-spaced bins, the top-k
max-activating tokens with +-`window` tokens of context (and the latent's activation on each
context token), and a uniform random sample of its active tokens (sorted by activation these
are samples across its quantiles).

The top-k is kept as a running top-k per latent: each batch contributes its own top-k
candidates, merged with the k kept so far. The random sample is the same machinery with a
hash of (token index, latent) as the key, so it is deterministic and order-independent.
`naive_feature_stats` computes the same from all activations at once, for tests and bench.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

HIST_EDGES = torch.logspace(-3, 3, 121)  # 120 log-spaced bins (20 per decade) from 0.001 to 1000
_P = 2**31 - 1


@dataclass
class TopContexts:
    """k contexts per latent, best key first; empty slots have `where == -1`."""

    keys: Tensor  # [d_sae, k]  activation (top) or random priority (samples)
    acts: Tensor  # [d_sae, k]  the latent's activation at the centre token
    where: Tensor  # [d_sae, k]  global token index, -1 for an empty slot
    tokens: Tensor  # [d_sae, k, 2w+1] int32  token ids around the centre, -1 outside the window
    ctx_acts: Tensor  # [d_sae, k, 2w+1]  the latent's activation on those tokens

    @classmethod
    def empty(cls, d_sae: int, k: int, width: int) -> "TopContexts":
        return cls(keys=torch.full((d_sae, k), -torch.inf), acts=torch.zeros(d_sae, k),
                   where=torch.full((d_sae, k), -1, dtype=torch.long),
                   tokens=torch.full((d_sae, k, width), -1, dtype=torch.int32),
                   ctx_acts=torch.zeros(d_sae, k, width))

    def merge(self, other: "TopContexts") -> "TopContexts":
        k = self.keys.shape[1]
        keys = torch.cat([self.keys, other.keys], 1)  # [d_sae, k + k']
        best = keys.topk(k, dim=1).indices  # [d_sae, k]
        pick = lambda a, b: torch.cat([a, b], 1).gather(1, best if a.ndim == 2 else best[..., None].expand(-1, -1, a.shape[2]))
        return TopContexts(keys=pick(self.keys, other.keys), acts=pick(self.acts, other.acts),
                           where=pick(self.where, other.where), tokens=pick(self.tokens, other.tokens),
                           ctx_acts=pick(self.ctx_acts, other.ctx_acts))


@dataclass
class FeatureStats:
    """What one pass over the tokens found, for every latent."""

    n_tokens: int
    n_active: Tensor  # [d_sae] int64
    act_sum: Tensor  # [d_sae] float64
    act_max: Tensor  # [d_sae]
    hist: Tensor  # [d_sae, n_bins] int64, bins HIST_EDGES
    top: TopContexts
    samples: TopContexts

    @property
    def d_sae(self) -> int:
        return int(self.n_active.shape[0])

    @property
    def density(self) -> Tensor:  # [d_sae]
        return self.n_active.double() / max(self.n_tokens, 1)

    @property
    def mean_active(self) -> Tensor:  # [d_sae]
        return self.act_sum / self.n_active.clamp_min(1)


def sample_priority(where: Tensor, latent: Tensor) -> Tensor:
    """A deterministic pseudo-random number in [0, 1) for each (token index, latent) pair."""
    x = (where * 1_000_003 + latent * 7919 + 12345) % _P
    for shift in (13, 11, 7):
        x = (x * 48271) % _P
        x = x ^ (x >> shift)
    return x.double() / _P


class StatsAccumulator:
    """Feed batches of latents with `update`; read the statistics with `result`."""

    def __init__(self, d_sae: int, k: int = 20, n_samples: int = 20, window: int = 10):
        self.d_sae, self.k, self.n_samples, self.window = d_sae, k, n_samples, window
        width = 2 * window + 1
        self.n_tokens = 0
        self.n_active = torch.zeros(d_sae, dtype=torch.long)
        self.act_sum = torch.zeros(d_sae, dtype=torch.float64)
        self.act_max = torch.zeros(d_sae)
        self.hist = torch.zeros(d_sae, len(HIST_EDGES) - 1, dtype=torch.long)
        self.top = TopContexts.empty(d_sae, k, width)
        self.samples = TopContexts.empty(d_sae, n_samples, width)

    def update(self, tokens: Tensor, latents: Tensor, mask: Tensor) -> None:
        """tokens [B, T] ids, latents [B, T, d_sae] (>= 0), mask [B, T]: which tokens count."""
        B, T = tokens.shape
        lat = (latents.float() * mask[..., None]).reshape(B * T, self.d_sae)  # [N, d_sae]
        where = torch.full((B, T), -1, dtype=torch.long)
        where[mask] = torch.arange(self.n_tokens, self.n_tokens + int(mask.sum()))
        where = where.reshape(-1)  # [N] global index of each counted token
        active = lat > 0  # [N, d_sae]
        self.n_tokens += int(mask.sum())
        self.n_active += active.sum(0)
        self.act_sum += lat.sum(0, dtype=torch.float64)
        self.act_max = torch.maximum(self.act_max, lat.max(0).values)
        rows, cols = active.nonzero(as_tuple=True)  # the (token, latent) pairs that fired
        self._histogram(lat[rows, cols], cols)
        neg = torch.tensor(-torch.inf)
        self.top = self.top.merge(self._candidates(torch.where(active, lat, neg), lat, where, tokens, mask, self.k))
        prio = torch.full_like(lat, -torch.inf)
        prio[rows, cols] = sample_priority(where[rows], cols).float()
        self.samples = self.samples.merge(self._candidates(prio, lat, where, tokens, mask, self.n_samples))

    def _histogram(self, values: Tensor, cols: Tensor) -> None:
        n_bins = self.hist.shape[1]
        bins = (torch.bucketize(values, HIST_EDGES) - 1).clamp(0, n_bins - 1)
        self.hist += torch.bincount(cols * n_bins + bins, minlength=self.d_sae * n_bins).view(self.d_sae, n_bins)

    def _candidates(self, keys: Tensor, lat: Tensor, where: Tensor, tokens: Tensor, mask: Tensor,
                    k: int) -> TopContexts:
        """This batch's best k tokens per latent by `keys [N, d_sae]`, with their contexts."""
        T = tokens.shape[1]
        k = min(k, keys.shape[0])
        top = keys.t().topk(k, dim=1)  # [d_sae, k]
        valid = top.values > -torch.inf
        n = top.indices  # [d_sae, k] flat token index in the batch
        offsets = torch.arange(-self.window, self.window + 1)
        t = n[..., None] % T + offsets  # [d_sae, k, 2w+1]
        rows = (n[..., None] // T) * T + t.clamp(0, T - 1)
        inside = (t >= 0) & (t < T) & mask.reshape(-1)[rows] & valid[..., None]
        latent = torch.arange(self.d_sae)[:, None, None]
        return TopContexts(
            keys=top.values.float(),
            acts=torch.where(valid, lat[n, torch.arange(self.d_sae)[:, None]], 0.0),
            where=torch.where(valid, where[n], -1),
            tokens=torch.where(inside, tokens.reshape(-1)[rows], -1).int(),
            ctx_acts=torch.where(inside, lat[rows, latent], 0.0),
        )

    def result(self) -> FeatureStats:
        return FeatureStats(n_tokens=self.n_tokens, n_active=self.n_active, act_sum=self.act_sum,
                            act_max=self.act_max, hist=self.hist, top=self.top, samples=self.samples)


def naive_feature_stats(tokens: Tensor, latents: Tensor, mask: Tensor, k: int = 20, n_samples: int = 20,
                        window: int = 10) -> FeatureStats:
    """The same statistics from all latents `[B, T, d_sae]` at once, latent by latent (reference)."""
    B, T, d_sae = latents.shape
    width = 2 * window + 1
    pos = [(b, t) for b in range(B) for t in range(T) if mask[b, t]]
    lat = torch.stack([latents[b, t].float() for b, t in pos])  # [N, d_sae]
    n_active = (lat > 0).sum(0)
    hist = torch.zeros(d_sae, len(HIST_EDGES) - 1, dtype=torch.long)
    top, samples = TopContexts.empty(d_sae, k, width), TopContexts.empty(d_sae, n_samples, width)
    for j in range(d_sae):
        col = lat[:, j]
        act_idx = (col > 0).nonzero().flatten()
        bins = (torch.bucketize(col[act_idx], HIST_EDGES) - 1).clamp(0, hist.shape[1] - 1)
        hist[j] = torch.bincount(bins, minlength=hist.shape[1])
        by_act = act_idx[col[act_idx].argsort(descending=True)][:k]
        prio = sample_priority(act_idx, torch.full_like(act_idx, j)).float()
        by_prio = act_idx[prio.argsort(descending=True)][:n_samples]
        for store, chosen, keys in ((top, by_act, col), (samples, by_prio, None)):
            for r, i in enumerate(chosen.tolist()):
                b, t = pos[i]
                store.keys[j, r] = col[i] if keys is not None else sample_priority(torch.tensor(i), torch.tensor(j)).float()
                store.acts[j, r], store.where[j, r] = col[i], i
                for c, tt in enumerate(range(t - window, t + window + 1)):
                    if 0 <= tt < T and mask[b, tt]:
                        store.tokens[j, r, c] = tokens[b, tt]
                        store.ctx_acts[j, r, c] = latents[b, tt, j]
    return FeatureStats(n_tokens=len(pos), n_active=n_active, act_sum=lat.sum(0, dtype=torch.float64),
                        act_max=lat.max(0).values.clamp_min(0), hist=hist, top=top, samples=samples)
