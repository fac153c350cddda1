"""Train one or several SAEs from one stream of activation batches, with exact resume.

The stream is a dict `{site: [batch_size, d_in]}` per step: `activations.shuffled_rows` over the
windows of an activation store (`store_windows`, shards in a seeded order) or of the model on the
fly (`model_windows`). Every SAE in the run sees the same batches, so several sites or
hyper-parameters cost one pass over the data.

Resume is exact: a checkpoint holds each SAE's state (weights and buffers), its optimiser's
`state_dict()` (whatever the optimiser keeps), the dead-latent counters and the step; the batch
stream is deterministic for a seed, so `resume=True` skips the batches already seen and
reaches the same weights as an uninterrupted run. Ctrl-C writes a checkpoint before it stops.
`run_train` is `greyglass sae train`: one SAE per (site, k) from a store or on the fly, on one
process or several (`torchrun`, see `distributed`). Each SAE is seeded by the training seed plus
its index among the SAEs of its site, so a site's SAEs are the same whether it trains alone or
beside others (`--layers 0-29`: one forward pass feeds every layer's SAE).
"""

from __future__ import annotations

import itertools
import json
import math
import pickle
import shutil
import signal
import threading
import time
from contextlib import contextmanager
from collections.abc import Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from ..activations import model_windows, shuffled_rows, store_windows
from ..atomic import atomic_dir
from ..data.corpus import corpus_fingerprint
from ..errors import GreyglassError
from ..json_files import read_json_object
from ..models.lm import LoadedModel
from ..records import from_json
from ..runs import write_config, write_results
from ..store.reader import ActivationStore
from .architectures import create_sae
from .config import SAEConfig, TopKConfig, TrainConfig, TrainRunConfig, with_dead_window
from .distributed import LostRank, Ranks, process_group
from .heldout import TRAINING_TEXT, store_training_text, training_text
from .io import load_sae, read_training, save_sae
from .model import SparseAutoencoder
from .results import TrainedSAE, TrainResults

CHECKPOINT = "checkpoint"
Batches = Iterator[dict[str, torch.Tensor]]
_SPARSITY_FROM = 0.8  # firing rates are counted over the last 20% of training
FORWARD_TOKENS = 4096
"""Tokens per forward pass (or per read from a store) into the shuffling buffer."""


def windows_per_forward(context_size: int) -> int:
    """Windows of `context_size` tokens per forward pass (or store read) feeding the shuffling buffer."""
    return max(1, FORWARD_TOKENS // context_size)


class TrainResult(NamedTuple):
    saes: list[SparseAutoencoder]
    folders: list[Path]
    metrics: list[dict[str, float]]  # per SAE: final smoothed fvu, l0, dead fraction
    tokens: int
    seconds: float


class _Run:
    """One SAE being trained: model, optimiser, dead-latent counters."""

    def __init__(self, cfg: SAEConfig, tcfg: TrainConfig, seed: int, device: str):
        self.device = torch.device(device)
        self.sae = create_sae(cfg, seed=seed).to(self.device).train()
        self.opt = _optimizer(self.sae, tcfg)
        self.since_fired = torch.zeros(cfg.d_sae, dtype=torch.long, device=self.device)
        self.fire_count = torch.zeros(cfg.d_sae, dtype=torch.long, device=self.device)
        self.counted = 0
        self.ema: dict[str, float] = {}

    @property
    def site(self) -> str:
        return self.sae.cfg.hook_name

    def step(self, x: torch.Tensor, lr: float, tokens: int, ranks: Ranks) -> torch.Tensor:
        """One optimiser step on this rank's rows `x [n, d_in]` (gradients averaged over the ranks);
        returns the step's statistics on these rows, for `ranks.sum` and then `account`."""
        cfg = self.sae.cfg
        x = x.to(self.device, non_blocking=True)
        if tokens == 0:
            self.sae.initialise_from(ranks.gather_rows(x))  # every rank starts from the whole first batch
        dead = self.since_fired >= cfg.dead_tokens
        out = self.sae(x, dead=dead, sparsity_scale=self.sae.sparsity_scale(tokens))
        for group in self.opt.param_groups:
            group["lr"] = lr * group["lr_scale"]
        self.opt.zero_grad(set_to_none=True)
        out.loss.backward()
        ranks.mean_gradients(self.sae.parameters())
        self.opt.step()
        self.sae.after_step()
        with torch.no_grad():
            xn = x.double() * self.sae.scale  # [n, d_in]
            n = len(x)
            sums = torch.stack([torch.tensor(float(n), device=xn.device), out.mse.double() * n, out.l0.double() * n,
                                out.aux.double() * n, xn.pow(2).sum()])
            return torch.cat([out.counts.double(), *(b.double().flatten() for b in self._buffers()), sums, xn.sum(0)])

    def _buffers(self) -> list[torch.Tensor]:
        """The SAE's floating buffers that training moves (firing rates of the cost, BatchTopK's threshold)."""
        return [b for b in self.sae.buffers() if b.is_floating_point()]

    def stats_size(self) -> int:
        return self.sae.cfg.d_sae + sum(b.numel() for b in self._buffers()) + 5 + self.sae.cfg.d_in

    @torch.no_grad()
    def account(self, total: torch.Tensor, world: int, count_sparsity: bool) -> None:
        """Take in a step's statistics summed over the ranks: firing counts, the buffers (averaged), the metrics."""
        d_sae, buffers = self.sae.cfg.d_sae, self._buffers()
        counts, rest = total[:d_sae], total[d_sae:]
        for b in buffers:
            b.copy_((rest[:b.numel()] / world).view_as(b))
            rest = rest[b.numel():]
        n, mse, l0, aux, square = rest[:5].tolist()
        mean = rest[5:] / n  # [d_in]
        dead = (self.since_fired >= self.sae.cfg.dead_tokens).float().mean().item()  # as in the step
        fired = counts.long()
        self.since_fired += int(n)
        self.since_fired[fired > 0] = 0
        if count_sparsity:
            self.fire_count += fired
            self.counted += int(n)
        variance = square / n - mean.pow(2).sum().item()  # of the normalised rows, summed over d_in
        fvu = mse / n / variance if variance > 0 else math.nan  # rows all alike: no variance to explain
        self._smooth(fvu=fvu, l0=l0 / n, dead=dead, aux=aux / n)

    def state(self) -> dict[str, Any]:
        """What another rank needs to take this SAE over: config, weights and buffers, optimiser state (on the CPU)."""
        opt = self.opt.state_dict()
        opt["state"] = {p: {k: v.cpu() if torch.is_tensor(v) else v for k, v in moments.items()}
                        for p, moments in opt["state"].items()}
        return {"cfg": self.sae.cfg, "sae": {n: t.cpu() for n, t in self.sae.state_dict().items()}, "opt": opt}

    def load_state(self, state: dict[str, Any]) -> None:
        self.sae.cfg = state["cfg"]
        self.sae.load_state_dict(state["sae"])
        self.opt.load_state_dict(state["opt"])

    def _smooth(self, **values: float) -> None:
        for k, v in values.items():
            self.ema[k] = v if k not in self.ema else 0.9 * self.ema[k] + 0.1 * v

    def log10_density(self) -> torch.Tensor:
        return torch.log10(self.fire_count.double().clamp(min=1e-10) / max(1, self.counted)).float()


def _optimizer(sae: SparseAutoencoder, tcfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(_param_groups(sae), lr=tcfg.lr, betas=tuple(tcfg.adam_betas))


def _param_groups(sae: SparseAutoencoder) -> list[dict[str, Any]]:
    """Adam moves each parameter by about lr per step, whatever its scale. A JumpReLU threshold
    lives on the scale of the pre-activations (order 1, inputs having norm sqrt(d_in)), the weights
    on the scale 1/sqrt(d_in); so the thresholds' lr is sqrt(d_in) times larger, for both to move
    at the same relative pace. Otherwise the encoder, not the thresholds, sets the L0, and a
    target L0 is never reached in a run of a few hundred steps."""
    params = dict(sae.named_parameters())
    threshold = [params.pop("threshold")] if "threshold" in params else []
    groups = [{"params": list(params.values()), "lr_scale": 1.0}]
    return groups + ([{"params": threshold, "lr_scale": math.sqrt(sae.cfg.d_in)}] if threshold else [])


def learning_rate(tcfg: TrainConfig, step: int) -> float:
    """Linear warm-up, constant, then linear decay to 0 over the last `decay_fraction`."""
    lr = tcfg.lr * min(1.0, (step + 1) / tcfg.warmup_steps) if tcfg.warmup_steps else tcfg.lr
    decay_start = tcfg.steps * (1 - tcfg.decay_fraction)
    if tcfg.decay_fraction > 0 and step >= decay_start:
        lr *= max(0.0, (tcfg.steps - step) / (tcfg.steps - decay_start))
    return lr


def train_saes(
    cfgs: Sequence[SAEConfig],
    tcfg: TrainConfig,
    batches: Batches,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    provenance: dict[str, Any] | None = None,
    device: str = "cpu",
    ranks: Ranks = Ranks(),
    distribute: bool = False,
) -> TrainResult:
    """Train every SAE in `cfgs` on the same batches (on `device`); write each to a folder under `out`.

    With several `ranks` each reads its own part of the data (`batches` of batch_size / world rows) and
    only rank 0 writes; every rank trains every SAE (data parallel), or with `distribute` its share of them
    on the whole batch, gathered."""
    out = Path(out)
    if resume and not (out / CHECKPOINT).is_dir() and (finished := _finished(out, cfgs, tcfg)):
        return finished
    cfgs = [with_dead_window(cfg, tcfg) for cfg in cfgs]  # the saved config records the window used
    runs = [_Run(cfg, tcfg, seed, device) for cfg, seed in zip(cfgs, sae_seeds(cfgs, tcfg.seed))]
    step = 0
    if resume and (out / CHECKPOINT).is_dir():
        step = _load_checkpoint(out / CHECKPOINT, runs, tcfg, ranks.world)
        batches = itertools.islice(batches, step, None)
    elif (out / CHECKPOINT).is_dir():
        raise GreyglassError(f"{out} holds a checkpoint of an unfinished run; pass --resume to continue it, "
                             "or choose another --out")
    bar = tqdm(total=tcfg.steps * tcfg.batch_size, initial=step * tcfg.batch_size, unit="tok", unit_scale=True,
               desc="train SAE" + ("s" if len(runs) > 1 else ""), disable=not (progress and ranks.main), smoothing=0.1)
    start = time.perf_counter()
    with _interrupt_between_steps() as interrupted:
        try:
            for batch in batches:
                if step >= tcfg.steps:
                    break
                tokens = step * tcfg.batch_size
                stop = _step(runs, batch, tcfg, step, ranks, distribute, interrupted())
                step += 1
                bar.update(tcfg.batch_size)
                bar.set_postfix(_postfix(runs[0]))
                every = tcfg.checkpoint_every
                if stop or (every and (step * tcfg.batch_size) // every > tokens // every and step < tcfg.steps):
                    _collect(runs, ranks, distribute)
                    if ranks.main:
                        _save_checkpoint(out / CHECKPOINT, runs, tcfg, step, ranks.world)
                if stop:
                    bar.close()
                    raise KeyboardInterrupt
        except LostRank as e:
            bar.close()
            raise LostRank(f"{e}; {_resume_from(out)}") from None
    bar.close()
    if step < tcfg.steps:
        raise GreyglassError(f"the activation stream ended after {step} of {tcfg.steps} steps")
    folders = [out / name for name in sae_folder_names(cfgs)]
    _collect(runs, ranks, distribute)
    if ranks.main:
        _save_finished(out, runs, tcfg, provenance or {})
        shutil.rmtree(out / CHECKPOINT, ignore_errors=True)
    ranks.barrier()  # the other ranks return once the folders are written
    metrics = [{k: round(v, 6) for k, v in r.ema.items()} for r in runs]
    return TrainResult([r.sae.eval() for r in runs], folders, metrics, step * tcfg.batch_size,
                       time.perf_counter() - start)


def _step(runs: list[_Run], batch: dict[str, torch.Tensor], tcfg: TrainConfig, step: int, ranks: Ranks,
          distribute: bool, interrupted: bool) -> bool:
    """One optimiser step of every SAE this rank trains; whether any rank was interrupted (all then stop)."""
    tokens, lr = step * tcfg.batch_size, learning_rate(tcfg, step)
    if distribute:  # each rank's SAEs see every rank's rows, and need no gradient exchange
        batch = {s: ranks.gather_rows(rows) for s, rows in batch.items()}
    own = Ranks() if distribute else ranks
    device = runs[0].device
    sums = [run.step(_site_batch(batch, run.site), lr, tokens, own) if not distribute or ranks.owner(i) == ranks.rank
            else torch.zeros(run.stats_size(), dtype=torch.float64, device=device) for i, run in enumerate(runs)]
    # one collective for every SAE's statistics and for Ctrl-C, so all ranks stop after the same step
    total = ranks.sum(torch.cat([*sums, torch.tensor([float(interrupted)], dtype=torch.float64, device=device)]))
    for run, part in zip(runs, total[:-1].split([len(s) for s in sums])):
        run.account(part, 1 if distribute else ranks.world, count_sparsity=step >= _SPARSITY_FROM * tcfg.steps)
    return bool(total[-1] > 0)


def _collect(runs: list[_Run], ranks: Ranks, distribute: bool) -> None:
    """With sites spread over ranks: every SAE's weights and optimiser state from its rank to rank 0, which writes."""
    if not distribute:
        return
    for i, run in enumerate(runs):
        mine = ranks.owner(i) == ranks.rank
        state = ranks.from_rank(run.state() if mine else None, ranks.owner(i))
        if ranks.main and not mine:
            run.load_state(state)


def sae_seeds(cfgs: Sequence[SAEConfig], seed: int) -> list[int]:
    """Each SAE's initialisation seed: `seed` plus its index among the SAEs of its site, so a site's SAEs are
    the same whether it trains alone or beside other sites."""
    seen: dict[str, int] = {}
    seeds = []
    for cfg in cfgs:
        seeds.append(seed + seen.get(cfg.hook_name, 0))
        seen[cfg.hook_name] = seen.get(cfg.hook_name, 0) + 1
    return seeds


def _resume_from(out: Path) -> str:
    """Where a failed run continues from, for its error message."""
    try:
        step = read_json_object(out / CHECKPOINT / "state.json").get("step")
    except GreyglassError:
        return f"no checkpoint was written yet (see --checkpoint-every); train again into {out}"
    return f"{out / CHECKPOINT} holds step {step}: rerun with --resume (with the same number of ranks) to continue"


@contextmanager
def _interrupt_between_steps():
    """Defer Ctrl-C to the end of the current step, so the checkpoint is consistent."""
    hit = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield hit.is_set
        return
    previous = signal.signal(signal.SIGINT, lambda *_: hit.set())
    try:
        yield hit.is_set
    finally:
        signal.signal(signal.SIGINT, previous)


def _site_batch(batch: dict[str, torch.Tensor], site: str) -> torch.Tensor:
    if site in batch:
        return batch[site]
    if len(batch) == 1 and not site:
        return next(iter(batch.values()))
    raise GreyglassError(f"the SAE reads site {site!r} but the batches hold {', '.join(batch)}")


def _postfix(run: _Run) -> dict[str, str]:
    e = run.ema
    return {"fvu": f"{e.get('fvu', math.nan):.3f}", "L0": f"{e.get('l0', math.nan):.1f}",
            "dead": f"{e.get('dead', math.nan):.1%}"}


def sae_folder_names(cfgs: Sequence[SAEConfig]) -> list[str]:
    """`sae` for a single SAE, else `sae<i>-<arch>-<d_sae>[-k<k>]-<site>` so folders say what they hold."""
    if len(cfgs) == 1:
        return ["sae"]
    return [f"sae{i}-{c.architecture}-{c.d_sae}{f'-k{c.arch.k}' if isinstance(c.arch, TopKConfig) else ''}-"
            f"{c.hook_name or 'site'}" for i, c in enumerate(cfgs)]


def _save_finished(out: Path, runs: list[_Run], tcfg: TrainConfig, provenance: dict[str, Any]) -> None:
    for name, run in zip(sae_folder_names([r.sae.cfg for r in runs]), runs):
        training = {"train": asdict(tcfg), "final": run.ema, "provenance": provenance}
        save_sae(run.sae, out / name, sparsity=run.log10_density(), training=training)


def _finished(out: Path, cfgs: Sequence[SAEConfig], tcfg: TrainConfig) -> TrainResult | None:
    """The SAEs of a run that already finished with the same settings (resume is then a no-op)."""
    folders = [out / name for name in sae_folder_names(cfgs)]
    trainings = [read_training(f) for f in folders]
    if not all(t.get("train") == json.loads(json.dumps(asdict(tcfg))) for t in trainings):
        return None
    return TrainResult([load_sae(f) for f in folders], folders, [t.get("final", {}) for t in trainings],
                       tcfg.steps * tcfg.batch_size, 0.0)


# Which order of training rows a seed gives; resuming skips `step` batches of the stream, which only
# continues the interrupted run if the stream is the one it was reading. 2: greyglass.activations.
STREAM = 2


def _save_checkpoint(folder: Path, runs: list[_Run], tcfg: TrainConfig, step: int, world: int) -> None:
    with atomic_dir(folder) as tmp:
        state = {"step": step, "stream": STREAM, "world": world, "train": asdict(tcfg), "saes": []}
        for i, run in enumerate(runs):
            tensors = {f"sae.{n}": t for n, t in run.sae.state_dict().items()}
            tensors |= {"since_fired": run.since_fired, "fire_count": run.fire_count}
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / f"sae{i}.safetensors"))
            torch.save(run.opt.state_dict(), tmp / _optimizer_file(i))
            state["saes"].append({"cfg": asdict(run.sae.cfg), "counted": run.counted, "ema": run.ema,
                                  "optimizer_state": _state_keys(run.opt)})
        (tmp / "state.json").write_text(json.dumps(state, indent=2) + "\n")


def _optimizer_file(i: int) -> str:
    return f"optimizer{i}.pt"


def _state_keys(opt: torch.optim.Optimizer) -> list[str]:
    """The names of the optimiser's per-parameter state (Adam: exp_avg, exp_avg_sq, step), recorded beside
    its file: a damaged pickle can rename them all alike, which loads but fails at the next step."""
    return sorted({k for s in opt.state.values() for k in s})


def _load_checkpoint(folder: Path, runs: list[_Run], tcfg: TrainConfig, world: int) -> int:
    state = read_json_object(folder / "state.json")
    step = state.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= tcfg.steps:  # resuming skips `step` batches
        raise GreyglassError(f"{folder / 'state.json'}: field 'step' must be an integer from 0 to {tcfg.steps}, "
                             f"not {step!r}; train again into another --out")
    if not isinstance(state.get("saes"), list):
        raise GreyglassError(f"{folder / 'state.json'}: field 'saes' must be a list; train again into another --out")
    if len(state["saes"]) != len(runs):
        raise GreyglassError(f"{folder} holds {len(state['saes'])} SAEs, this run trains {len(runs)}; "
                             "resume with the same settings")
    if state.get("stream", 1) != STREAM:
        raise GreyglassError(f"{folder} was written by a greyglass that ordered training rows differently, so resuming "
                             "would not continue the same run; finish it with that version, or train again into "
                             "another --out")
    try:
        saved = from_json(TrainConfig, state.get("train"), str(folder / "state.json"), "train")
    except GreyglassError as e:  # a TrainConfig's own checks do not know the file
        raise GreyglassError(str(e) if str(folder) in str(e) else f"{folder / 'state.json'}: field 'train': {e}") from None
    if state.get("world", 1) != world:  # each rank's stream depends on the number of ranks
        raise GreyglassError(f"{folder} was written by a run of world size {state.get('world', 1)}; resume it with "
                             f"as many ranks (this run has {world})")
    if (saved.batch_size, saved.seed) != (tcfg.batch_size, tcfg.seed):
        raise GreyglassError(f"{folder} was written with batch_size {saved.batch_size} and seed {saved.seed}; "
                             "resume with the same ones")
    for i, (run, meta) in enumerate(zip(runs, state["saes"])):
        if not (isinstance(meta, dict) and isinstance(meta.get("cfg"), dict) and _is_number(meta.get("counted"), int)
                and isinstance(meta.get("ema"), dict) and all(_is_number(v, float) for v in meta["ema"].values())):
            raise GreyglassError(f"{folder / 'state.json'}: field 'saes' item {i} needs 'cfg' (an object), 'counted' "
                                 "(an integer) and 'ema' (an object of numbers); train again into another --out")
        try:
            cfg = SAEConfig.from_dict(meta["cfg"], str(folder / "state.json"))
        except (GreyglassError, TypeError, KeyError) as e:  # not every check of a config knows its file or the type
            raise GreyglassError(f"{folder / 'state.json'}: field 'saes' item {i} 'cfg': {e!s}") from None
        if (cfg.architecture, cfg.d_in, cfg.d_sae, cfg.hook_name, cfg.dead_tokens) != (run.sae.cfg.architecture,
                run.sae.cfg.d_in, run.sae.cfg.d_sae, run.sae.cfg.hook_name, run.sae.cfg.dead_tokens):
            raise GreyglassError(f"{folder}: SAE {i} in the checkpoint is a different SAE; resume with the same settings")
        if not (folder / _optimizer_file(i)).is_file():
            raise GreyglassError(f"{folder} has no {_optimizer_file(i)}: it was written by a greyglass older than "
                                 "optimiser-state checkpoints; finish it with that version, or train again into "
                                 "another --out")
        run.sae.cfg = cfg
        try:
            tensors = load_file(str(folder / f"sae{i}.safetensors"), device=str(run.device))
            run.sae.load_state_dict({n.removeprefix("sae."): t for n, t in tensors.items() if n.startswith("sae.")})
            # on the CPU: load_state_dict moves each moment to its parameter's device, and keeps Adam's step where it belongs
            run.opt.load_state_dict(torch.load(folder / _optimizer_file(i), map_location="cpu", weights_only=True))
            run.since_fired, run.fire_count = tensors["since_fired"], tensors["fire_count"]
            run.counted, run.ema = meta["counted"], meta["ema"]
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError, EOFError, OSError, SafetensorError,
                pickle.UnpicklingError) as e:  # a damaged file: safetensors, pickle and torch each fail their own way
            raise GreyglassError(f"{folder}: SAE {i}'s saved state is damaged ({type(e).__name__}: {e}); "
                                 "train again into another --out") from None
        _check_state(folder, i, run, meta.get("optimizer_state"))
    return step


def _is_number(value: Any, kind: type) -> bool:
    """An int (or, for float, any finite number) as JSON gives it, not a bool."""
    return isinstance(value, (int, kind)) and not isinstance(value, bool) and math.isfinite(value) \
        if kind is float else isinstance(value, int) and not isinstance(value, bool)


def _check_state(folder: Path, i: int, run: _Run, optimizer_state: Any) -> None:
    """What training would otherwise trip on later: counters of the SAE's width, finite weights, and optimiser
    moments of their parameters' shapes, named as recorded at saving (`optimizer_state`; absent in checkpoints
    written before it was recorded) and the same for every parameter."""
    d_sae = run.sae.cfg.d_sae
    counters_ok = all(t.shape == (d_sae,) and t.dtype == torch.long for t in (run.since_fired, run.fire_count))
    states = [run.opt.state.get(p, {}) for g in run.opt.param_groups for p in g["params"]]
    moments_ok = all(not torch.is_tensor(v) or v.ndim == 0 or v.shape == p.shape
                     for g in run.opt.param_groups for p in g["params"] for v in run.opt.state.get(p, {}).values())
    finite = all(torch.isfinite(p).all() for p in run.sae.parameters())
    keys_ok = optimizer_state is None or _state_keys(run.opt) == optimizer_state
    if not (counters_ok and moments_ok and finite and keys_ok and len({frozenset(s) for s in states}) <= 1):
        raise GreyglassError(f"{folder}: SAE {i}'s saved state is damaged (counters, weights or optimiser moments "
                             "of the wrong shape, type or value); train again into another --out")


class Source(NamedTuple):
    """Where `sae train` reads activations: the batches, the SAE facts they fix, and the provenance recorded."""

    batches: Batches
    """This rank's batches of batch_size / ranks rows."""
    sites: list[str]
    d_in: int
    facts: dict[str, Any]
    """SAEConfig fields the data decides: model_name, context_size, prepend_bos."""
    provenance: dict[str, Any]
    """For config.json and each SAE's training.json (whose `training_text` `sae eval` checks)."""


def training_source(lm: LoadedModel | None, cfg: TrainRunConfig, ranks: Ranks = Ranks()) -> Source:
    """This rank's part of the training rows: from `cfg.store`, or else from `lm` on the fly."""
    if cfg.train.batch_size % ranks.world:
        raise GreyglassError(f"--batch-size {cfg.train.batch_size} does not split evenly over {ranks.world} ranks; "
                             "choose a multiple of the number of processes")
    return _from_store(cfg, ranks) if cfg.store is not None else _on_the_fly(lm, cfg, ranks)


def _from_store(cfg: TrainRunConfig, ranks: Ranks) -> Source:
    store = ActivationStore(cfg.store)
    m = store.manifest
    sites = [store.site(s) for s in cfg.all_sites()] if cfg.all_sites() else store.sites
    facts = {"model_name": m["model"]["spec"], "context_size": m["context_size"],
             "prepend_bos": m["corpus"].get("prepend_bos") is not False}
    provenance = {"store": str(store.folder), "model": m["model"], "corpus_fingerprint": m["corpus"]["fingerprint"],
                  TRAINING_TEXT: store_training_text(m)}
    if store.n_tokens < cfg.train.batch_size:  # before any reading, naming the store
        raise GreyglassError(f"{store.folder} holds {store.n_tokens} tokens, fewer than one batch of "
                             f"{cfg.train.batch_size}; capture more or lower --batch-size")
    per_read, part = windows_per_forward(m["context_size"]), (ranks.rank, ranks.world)
    batches = shuffled_rows(lambda epoch: store_windows(store, sites, per_read, shard_seed=cfg.train.seed + epoch,
                                                        part=part),
                            cfg.train.batch_size // ranks.world, cfg.train.buffer_tokens,
                            seed=cfg.train.seed + ranks.rank)
    return Source(batches, sites, store.d_model, facts, provenance)


def _on_the_fly(lm: LoadedModel, cfg: TrainRunConfig, ranks: Ranks) -> Source:
    corpus = cfg.training_corpus()
    sites = [lm.site(s).name for s in cfg.all_sites()]
    facts = {"model_name": lm.spec, "context_size": corpus.context_size,
             "prepend_bos": lm.prepend_bos if corpus.prepend_bos is None else corpus.prepend_bos}
    provenance = {"model": lm.provenance(), "corpus": asdict(corpus), "corpus_fingerprint": corpus_fingerprint(corpus),
                  TRAINING_TEXT: training_text(corpus)}
    per_forward, part = windows_per_forward(corpus.context_size), (ranks.rank, ranks.world)
    batches = shuffled_rows(lambda epoch: model_windows(lm, sites, corpus, per_forward, part=part),
                            cfg.train.batch_size // ranks.world, cfg.train.buffer_tokens,
                            seed=cfg.train.seed + ranks.rank)
    return Source(batches, sites, lm.d_model, facts, provenance)


def _pinned(batches: Batches) -> Batches:
    """Batches in page-locked memory, so copying them to the GPU overlaps the SAE step (`non_blocking`)."""
    for batch in batches:
        yield {s: rows.pin_memory() for s, rows in batch.items()}


def run_train(lm: LoadedModel | None, cfg: TrainRunConfig, out: Path, resume: bool = False,
              progress: bool = True) -> TrainResults:
    """`sae train`: every SAE `cfg` asks for, from one pass over its store or (without one) over the activations
    of `lm` (or of the model `cfg.model` names); writes the run folder, resumable. Under torchrun, one rank of a
    data-parallel run (`distributed`)."""
    with process_group(str(lm.device) if lm is not None else cfg.model.device, cfg.dist_timeout) as ranks:
        return _train_run(lm, cfg, out, resume, progress, ranks)


def _train_run(lm: LoadedModel | None, cfg: TrainRunConfig, out: Path, resume: bool, progress: bool,
               ranks: Ranks) -> TrainResults:
    device = ranks.device(str(lm.device) if lm is not None else cfg.model.device)
    if cfg.store is None and lm is None:
        lm = replace(cfg.model, device=device).load(None)
    source = training_source(lm, cfg, ranks)
    saes = cfg.sae_configs(source.sites, source.d_in, **source.facts)
    if ranks.main:
        write_config(out, "sae_train", config=cfg, saes=saes, **source.provenance)
    batches = _pinned(source.batches) if device.startswith("cuda") else source.batches
    trained = train_saes(saes, cfg.train, batches, out, resume=resume, progress=progress,
                         provenance=source.provenance, device=device, ranks=ranks, distribute=cfg.distribute_sites)
    rows = tuple(TrainedSAE(folder=str(folder.relative_to(out)), site=c.hook_name, architecture=c.architecture,
                            d_sae=c.d_sae, k=c.arch.k if isinstance(c.arch, TopKConfig) else None,
                            fvu=m["fvu"], l0=m["l0"], dead=m["dead"])
                 for folder, c, m in zip(trained.folders, saes, trained.metrics))
    # a run resumed after it finished trains nothing in this invocation: no speed to report
    speed = round(trained.tokens / trained.seconds, 1) if trained.seconds else 0.0
    results = TrainResults(rows, trained.tokens, round(trained.seconds, 2), speed)
    if ranks.main:
        write_results(out, results)
    ranks.barrier()  # the other ranks return (and the CLI reads the folder) once it is complete
    return results
