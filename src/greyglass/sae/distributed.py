"""SAE training on several processes with torch.distributed: `torchrun --nproc_per_node N -m greyglass sae train`.

`process_group` reads this process's place from the environment torchrun sets (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and joins the others (gloo on the CPU, NCCL on CUDA); without
that environment a run is one process and nothing here communicates. `Ranks` holds the collectives
training uses, each turning a lost peer into a `GreyglassError`:

- data parallel (the default): each rank reads its own part of the data (its share of a store's
  shards, or of the forward passes on the fly) in batches of batch_size / N rows. Gradients are
  averaged (`mean_gradients`, one all_reduce per SAE and step), so every rank takes the step one
  process takes on the N parts together; firing counts (hence dead latents), the buffers (firing
  rates of a frequency-aware cost, BatchTopK's threshold) and the logged metrics are summed
  (`sum`); the first batch is gathered (`gather_rows`) so every rank starts from the same b_dec
  and normalisation. Batch-level choices stay on a rank's rows: BatchTopK keeps the k * N/ranks
  best of its own rows, AuxK normalises by its own rows' residual variance.
- sites spread over ranks (`--distribute-sites`, sparsify's `--distribute_modules`): each rank
  still runs the model on its own part, then `gather_rows` hands every rank the whole batch, and
  each trains only the SAEs it owns (`owner`: round robin), on the whole batch, with no gradient
  exchange: the SAEs of one process on the same batches, bit for bit. Before rank 0 writes, each
  SAE's state comes to it from its owner (`from_rank`).

Only rank 0 writes. A rank that dies makes the others fail at their next collective (gloo notices a
closed connection at once; a rank that hangs, after --dist-timeout seconds), leaving the last
checkpoint to --resume from.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Callable, NamedTuple, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from ..errors import GreyglassError

T = TypeVar("T")


class LostRank(GreyglassError):
    """Another rank stopped answering (it died, or hung past the timeout)."""


class Ranks(NamedTuple):
    """This process's place among the processes of one run (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this rank writes (the run folder, checkpoints, the progress display)."""
        return self.rank == 0

    def device(self, device: str) -> str:
        """`cuda` means this rank's own GPU (LOCAL_RANK) when several processes share a machine."""
        return f"cuda:{self.local_rank}" if device == "cuda" and self.world > 1 else device

    def owner(self, i: int) -> int:
        """The rank that trains SAE `i` when sites are spread over ranks: round robin."""
        return i % self.world

    def sum(self, t: Tensor) -> Tensor:
        """`t` summed over the ranks (in place)."""
        if self.world > 1:
            self._collective(lambda: dist.all_reduce(t), "summing the step's statistics")
        return t

    def mean_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Every parameter's gradient averaged over the ranks, in one all_reduce."""
        if self.world == 1:
            return
        params = list(params)
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])
        self._collective(lambda: dist.all_reduce(flat), "averaging gradients")
        flat /= self.world
        for p, g in zip(params, flat.split([p.numel() for p in params])):
            p.grad = g.view_as(p)

    def gather_rows(self, x: Tensor) -> Tensor:
        """Every rank's rows `[n, d]` (the same n on each), in rank order: `[world * n, d]`."""
        if self.world == 1:
            return x
        parts = [torch.empty_like(x) for _ in range(self.world)]
        self._collective(lambda: dist.all_gather(parts, x.contiguous()), "gathering a batch")
        return torch.cat(parts)

    def from_rank(self, obj: T, src: int) -> T:
        """Rank `src`'s `obj` (any picklable value), on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        self._collective(lambda: dist.broadcast_object_list(box, src=src), "passing an SAE to rank 0")
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            self._collective(dist.barrier, "waiting for the other ranks")

    def _collective(self, op: Callable[[], T], what: str) -> T:
        try:
            return op()
        except RuntimeError as e:  # DistBackendError, gloo's closed connection, a timeout
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise LostRank(f"rank {self.rank} of {self.world} lost the other ranks while {what} ({reason}); "
                           "a rank died or hung, so every rank stops") from None


@contextmanager
def process_group(device: str, timeout_s: float) -> Iterator[Ranks]:
    """This process's `Ranks`, joined to the others for the duration (one process without torchrun's environment)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield Ranks()
        return
    if dist.is_initialized():  # a caller set it up; it keeps it
        yield Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
        return
    backend = "nccl" if device.startswith("cuda") else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":  # NCCL's object collectives and its communicator use the current device
        torch.cuda.set_device(local_rank)
    try:
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    except (RuntimeError, ValueError) as e:
        raise GreyglassError(f"could not join the other {world - 1} ranks with {backend} ({e}); start every rank with "
                             "torchrun (RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set)") from None
    try:
        yield Ranks(dist.get_rank(), dist.get_world_size(), local_rank)
    finally:
        dist.destroy_process_group()
