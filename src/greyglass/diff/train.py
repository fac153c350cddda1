"""`diff train`: a BatchTopK crosscoder trained on two models' activations at one site over the same tokens.

On the fly and in one pass: both models run on every chunk of windows, and each token's two activations go
through the SAE trainer's shuffling buffer (`activations.shuffled_rows`) as one row, so row i of a batch is
one token seen by both models (a test holds identical models to identical halves). Resume is exact as for SAEs: a checkpoint holds the crosscoder, Adam's state, the
dead-latent counters and the step, and `--resume` skips the batches already seen.
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from ..activations import Windows, model_windows, shuffled_rows
from ..atomic import atomic_dir
from ..data.corpus import CorpusConfig, corpus_fingerprint
from ..errors import GreyglassError
from ..json_files import read_json_object
from ..models.lm import LoadedModel
from ..plots import histogram, save_svg
from ..records import from_json
from ..runs import write_config, write_results
from ..sae.train import learning_rate, windows_per_forward
from .config import CrosscoderConfig, CrosscoderTrainConfig, CrosscoderTrainResults
from .crosscoder import (Crosscoder, class_counts, latent_classes, load_crosscoder, read_training, relative_norms,
                         save_crosscoder)
from .pair import check_pair

CHECKPOINT = "checkpoint"
FOLDER = "crosscoder"
PLOT = "relative_decoder_norms.svg"


def paired_rows(lm_a: LoadedModel, lm_b: LoadedModel, site: str, cfg: CrosscoderTrainConfig) -> Iterator[torch.Tensor]:
    """Endless shuffled batches `[batch_size, 2, d_in]`: row i is one token's activation in A (0) and in B (1)."""
    corpus, t = cfg.training_corpus(), cfg.train
    for rows in shuffled_rows(lambda epoch: _paired_windows(lm_a, lm_b, site, corpus), t.batch_size,
                              t.buffer_tokens, seed=t.seed):
        yield torch.stack([rows["a"], rows["b"]], dim=1)


def _paired_windows(lm_a: LoadedModel, lm_b: LoadedModel, site: str, corpus: CorpusConfig) -> Iterator[Windows]:
    """Windows of the corpus with A's activations under "a" and B's under "b" (same tokens: `check_pair`); a row
    counts where it counts in both (an outlier in either model is left out)."""
    per_forward = windows_per_forward(corpus.context_size)
    for wa, wb in zip(model_windows(lm_a, [site], corpus, per_forward), model_windows(lm_b, [site], corpus, per_forward)):
        yield Windows(wa.tokens, {"a": next(iter(wa.acts.values())), "b": next(iter(wb.acts.values()))}, wa.docs,
                      wa.mask & wb.mask)


class _State:
    """The crosscoder being trained with its optimiser, dead-latent counter and smoothed metrics."""

    def __init__(self, cfg: CrosscoderConfig, seed: int, lr: float, betas: tuple[float, ...], device: str):
        self.cc = Crosscoder(cfg, seed).to(device).train()
        self.opt = torch.optim.Adam(self.cc.parameters(), lr=lr, betas=tuple(betas))
        self.since_fired = torch.zeros(cfg.d_sae, dtype=torch.long, device=device)
        self.ema: dict[str, float] = {}

    def step(self, x: torch.Tensor, lr: float, first: bool) -> None:
        x = x.to(self.cc.W_dec.device)
        if first:
            self.cc.initialise_from(x)
        dead = self.since_fired >= self.cc.cfg.dead_tokens
        out = self.cc(x, dead=dead)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        out.loss.backward()
        self.opt.step()
        self.since_fired += len(x)
        self.since_fired[out.counts > 0] = 0
        with torch.no_grad():
            xn = self.cc._normalised(x).view(len(x), 2, -1)
            variance = (xn - xn.mean(0)).pow(2).sum(-1).mean(0)  # [2]
            fvu = (out.mse_per_model / variance).tolist()
        self._smooth(fvu_a=fvu[0], fvu_b=fvu[1], l0=out.l0.item(), dead=dead.float().mean().item())

    def _smooth(self, **values: float) -> None:
        for k, v in values.items():
            self.ema[k] = v if k not in self.ema else 0.9 * self.ema[k] + 0.1 * v

    def save_checkpoint(self, folder: Path, step: int, train: dict) -> None:
        with atomic_dir(folder) as tmp:
            tensors = {f"cc.{n}": t for n, t in self.cc.state_dict().items()} | {"since_fired": self.since_fired}
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / "state.safetensors"))
            torch.save(self.opt.state_dict(), tmp / "optimizer.pt")
            meta = {"step": step, "train": train, "cfg": asdict(self.cc.cfg), "ema": self.ema}
            (tmp / "state.json").write_text(json.dumps(meta, indent=2) + "\n")

    def load_checkpoint(self, folder: Path, train: dict) -> int:
        meta = read_json_object(folder / "state.json")
        if meta.get("train") != train:
            raise GreyglassError(f"{folder} was written with other training settings; resume with the same ones")
        self.cc.cfg = from_json(CrosscoderConfig, meta.get("cfg"), str(folder / "state.json"), "cfg")
        tensors = load_file(str(folder / "state.safetensors"), device=str(self.cc.W_dec.device))
        self.cc.load_state_dict({n.removeprefix("cc."): t for n, t in tensors.items() if n.startswith("cc.")})
        self.opt.load_state_dict(torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True))
        self.since_fired = tensors["since_fired"]
        self.ema = meta["ema"]
        return int(meta["step"])


def train_crosscoder(lm_a: LoadedModel, lm_b: LoadedModel, cfg: CrosscoderTrainConfig, out: Path,
                     resume: bool = False, progress: bool = True) -> CrosscoderTrainResults:
    """Train the crosscoder `cfg` asks for into `out/crosscoder`, write the run folder and return its results."""
    check_pair(lm_a, lm_b)
    site = lm_a.site(cfg.site).name
    lm_b.site(site)  # range-checked against B too
    corpus = cfg.training_corpus()
    train = json.loads(json.dumps(asdict(cfg.train)))
    write_config(out, "diff_train", config=cfg, model=lm_b.provenance(), model_a=lm_a.provenance(),
                 corpus_fingerprint=corpus_fingerprint(corpus))
    if resume and not (out / CHECKPOINT).is_dir() and (out / FOLDER).is_dir() and read_training(out)["train"] == train:
        return _finish(out, load_crosscoder(out / FOLDER), read_training(out), 0.0, 0, cfg)
    if (out / CHECKPOINT).is_dir() and not resume:
        raise GreyglassError(f"{out} holds a checkpoint of an unfinished run; pass --resume to continue it, "
                             "or choose another --out")
    state = _State(cfg.crosscoder_config(lm_a.d_model), cfg.train.seed, cfg.train.lr, cfg.train.adam_betas,
                   str(lm_a.device))
    step = state.load_checkpoint(out / CHECKPOINT, train) if resume and (out / CHECKPOINT).is_dir() else 0
    first_step = step
    batches = itertools.islice(paired_rows(lm_a, lm_b, site, cfg), step, cfg.train.steps)
    t = cfg.train
    start = time.perf_counter()
    with tqdm(total=t.steps * t.batch_size, initial=step * t.batch_size, unit="tok", unit_scale=True,
              desc="train crosscoder", disable=not progress) as bar:
        for x in batches:
            state.step(x, learning_rate(t, step), first=step == 0)
            step += 1
            bar.update(t.batch_size)
            if t.checkpoint_every and (step * t.batch_size) // t.checkpoint_every > ((step - 1) * t.batch_size) // t.checkpoint_every:
                state.save_checkpoint(out / CHECKPOINT, step, train)
    if step < t.steps:
        raise GreyglassError(f"the activation stream ended after {step} of {t.steps} steps")
    seconds = time.perf_counter() - start
    training = {"train": train, "final": {k: round(v, 6) for k, v in state.ema.items()},
                "provenance": {"model_a": lm_a.provenance(), "model_b": lm_b.provenance(),
                               "corpus": asdict(corpus), "corpus_fingerprint": corpus_fingerprint(corpus)}}
    cc = state.cc.eval()
    save_crosscoder(cc, out / FOLDER, training)
    shutil.rmtree(out / CHECKPOINT, ignore_errors=True)
    return _finish(out, cc, training, seconds, (t.steps - first_step) * t.batch_size, cfg)


def _finish(out: Path, cc: Crosscoder, training: dict, seconds: float, trained_tokens: int,
            cfg: CrosscoderTrainConfig) -> CrosscoderTrainResults:
    """Results and the histogram of relative decoder norms; the speed counts the tokens this invocation trained."""
    relative = relative_norms(cc.decoder_norms().cpu())
    save_svg(out / PLOT, histogram(relative.tolist(), "Relative decoder norm of each latent (0: only A, 1: only B)",
                                   "relative decoder norm", bins=40))
    final = training["final"]
    tokens = cfg.train.steps * cfg.train.batch_size
    results = CrosscoderTrainResults(
        crosscoder=FOLDER, site=cc.cfg.hook_name, d_sae=cc.cfg.d_sae, k=cc.cfg.k, fvu_a=final["fvu_a"],
        fvu_b=final["fvu_b"], l0=final["l0"], dead=final["dead"], tokens=tokens, seconds=round(seconds, 2),
        tokens_per_second=round(trained_tokens / seconds, 1) if seconds else 0.0, counts=class_counts(latent_classes(relative)),
        plot=PLOT)
    write_results(out, results)
    return results
