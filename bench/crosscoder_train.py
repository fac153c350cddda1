"""Crosscoder training speed against training two separate SAEs on the same data.

Prints JSON. The same activations of two models `[batch, 2, d_in]` (random here: the speed of a step does not
depend on the values) go through training steps (forward, backward, Adam) of:
  (a) greyglass's BatchTopK `Crosscoder` with d_sae latents and k, reading both models at once;
  (b) two greyglass BatchTopK SAEs (d_sae latents, k each), one per model, as `sae train` would train them.
Figures: training tokens/s of each and the ratio a/b (above 1: the crosscoder is cheaper than the two SAEs it
replaces). Model forwards are left out: both set-ups need the same two.

    python bench/crosscoder_train.py [--d-in 576] [--d-sae 4608] [--k 32] [--batch 4096] [--steps 6] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from greyglass.diff.config import CrosscoderConfig
from greyglass.diff.crosscoder import Crosscoder
from greyglass.sae.architectures import create_sae
from greyglass.sae.config import BatchTopKConfig, SAEConfig


def _timed(step, steps: int) -> float:
    step()  # warm-up (allocations, first threshold)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def crosscoder_step(x: torch.Tensor, d_sae: int, k: int):
    cc = Crosscoder(CrosscoderConfig(d_in=x.shape[-1], d_sae=d_sae, k=k, norm_scale_a=1.0, norm_scale_b=1.0)).to(x.device)
    opt = torch.optim.Adam(cc.parameters(), lr=1e-4)
    dead = torch.zeros(d_sae, dtype=torch.bool, device=x.device)

    def step():
        out = cc(x, dead=dead)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()

    return step


def two_saes_step(x: torch.Tensor, d_sae: int, k: int):
    cfg = SAEConfig(arch=BatchTopKConfig(k=k), d_in=x.shape[-1], d_sae=d_sae, norm_scale=1.0)
    saes = [create_sae(cfg, seed=m).to(x.device).train() for m in range(2)]
    opts = [torch.optim.Adam(s.parameters(), lr=1e-4) for s in saes]

    def step():
        for m, (sae, opt) in enumerate(zip(saes, opts)):
            out = sae(x[:, m])
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            sae.after_step()

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d-in", type=int, default=576)
    p.add_argument("--d-sae", type=int, default=4608)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.manual_seed(0)
    x = torch.randn(args.batch, 2, args.d_in, device=args.device)
    cc = _timed(crosscoder_step(x, args.d_sae, args.k), args.steps)
    two = _timed(two_saes_step(x, args.d_sae, args.k), args.steps)
    print(json.dumps({
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {args.device}",
        "torch": torch.__version__, "d_in": args.d_in, "d_sae": args.d_sae, "k": args.k, "batch": args.batch,
        "crosscoder_tokens_per_s": round(args.batch / cc, 1), "two_saes_tokens_per_s": round(args.batch / two, 1),
        "ratio_crosscoder_over_two_saes": round(two / cc, 3)}, indent=2))


if __name__ == "__main__":
    main()
