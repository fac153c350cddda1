"""Settings and results of a capture, as typed records.

Kept free of torch so that `greyglass --help`, the report and the browser can read them
cheaply; the capture itself is in `writer.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import check_choice, check_positive, flagged
from ..data.corpus import CorpusConfig
from ..errors import GreyglassError
from ..models.dtypes import DTYPES, DtypeName


@dataclass(frozen=True)
class CaptureConfig:
    """How many activations to capture, in what batches and shards."""

    sites: tuple[str, ...] = flagged("site", default=("resid_post.15",))
    """Sites to capture (repeat --site for several), e.g. blocks.15.hook_resid_post or resid_post.15."""
    tokens: int = 100_000
    """How many token rows to store (each window's first row excluded)."""
    batch_tokens: int = 4096
    """Tokens per forward pass (batch size = batch_tokens // context_size windows)."""
    shard_tokens: int = 16_384
    """Rows per shard file (a shard closes after the batch that fills it)."""
    store_dtype: DtypeName = "float32"
    """dtype the activations are stored in (bfloat16 halves the disk)."""
    keep_bos: bool = False
    """Also store rows for each window's first position, BOS or attention sink, and outlier rows (dropped by
    default; reading a store leaves them out either way)."""

    def __post_init__(self) -> None:
        for name in ("tokens", "batch_tokens", "shard_tokens"):
            check_positive("CaptureConfig", name, getattr(self, name))
        check_choice("CaptureConfig", "store_dtype", self.store_dtype, DTYPES)
        if not self.sites:
            raise GreyglassError("CaptureConfig.sites is empty; name at least one --site")


@dataclass(frozen=True)
class CaptureRunConfig:
    """A `greyglass capture` run: what to capture, and from which text."""

    capture: CaptureConfig = field(default_factory=CaptureConfig)
    corpus: CorpusConfig = field(default_factory=lambda: CorpusConfig(split="train"))
    """Split `train` by default: every 20th document stays out of the store for `greyglass sae eval`."""


@dataclass(frozen=True)
class CaptureResults:
    """What a finished capture stored (the store's `manifest.json` has the per-shard detail)."""

    n_tokens: int
    tokens_requested: int
    sites: tuple[str, ...]
    """The captured sites' full names."""
    shards: int
    megabytes: float
    """Size of the shards on disk, MiB."""
    corpus_ran_out: bool
    """The corpus had fewer tokens (of its split) than were asked for."""
    seconds: float
    """Time of the last invocation (a resumed capture counts only the part it did)."""
