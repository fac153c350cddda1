"""SAE training speed and memory: greyglass's TopK against a naive dense PyTorch TopK and SAELens,
and (--arch matryoshka) greyglass's Matryoshka BatchTopK against SAELens's matryoshka_batchtopk.

Prints JSON. For each d_sae, the same activations, d_in, k and batch size go through one
training step (forward, backward, Adam, decoder renormalisation) of:
  (a) greyglass `SparseAutoencoder` (sparse TopK decode and encoder backward, `sae.kernels`),
  (b) a naive dense TopK in plain PyTorch (scatter to `[batch, d_sae]`, dense matmuls),
  (c) SAELens's `TopKTrainingSAE`, when `sae_lens` is importable (it is not a greyglass
      dependency; install it into the benchmark's own environment to get this figure).
Figures: training tokens/s (the median of --rounds timed passes over the same batches, the
methods taking turns in each round, so load from other jobs on a shared machine hits all alike),
ratios a/b and a/c (target a/c >= 2 on CPU at d_in 576,
d_sae 4608 and 9216, k 32), and peak RSS of a fresh process running each for a few steps.
AuxK is off in all of them (no dead latents), so the figures compare the TopK core alone.
With --arch matryoshka both sides nest the same prefix widths (greyglass's default ladder, d/16 ...
d) and there is no naive dense variant; SAELens's `MatryoshkaBatchTopKTrainingSAE` runs with its
defaults (`rescale_acts_by_decoder_norm` true, which costs it a norm per step).

    python bench/sae_train.py [--arch topk|matryoshka] [--d-in 576] [--d-sae 4608 9216] [--k 32] [--batch 4096]
        [--steps 8] [--rounds 3] [--store runs/demo/capture] [--device cpu] [--skip-memory]
"""

from __future__ import annotations

import argparse
import inspect
import json
import platform
import statistics
import subprocess
import sys
import time

import torch
from torch import nn


class NaiveTopK(nn.Module):
    """What one writes without greyglass: dense latents, dense products, autograd for the rest."""

    def __init__(self, d_in: int, d_sae: int, k: int):
        super().__init__()
        W_dec = torch.randn(d_sae, d_in)
        W_dec /= W_dec.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = nn.Parameter(W_dec.T.clone())
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.k = k

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        pre = (x - self.b_dec) @ self.W_enc + self.b_enc  # [N, d_sae]
        top = pre.topk(self.k, dim=-1)
        latents = torch.zeros_like(pre).scatter(1, top.indices, torch.relu(top.values))
        recon = latents @ self.W_dec + self.b_dec
        return (recon - x).pow(2).sum(-1).mean()

    @torch.no_grad()
    def after_step(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True)


def greyglass_step(d_in: int, d_sae: int, k: int, device: str, arch: str = "topk"):
    from greyglass.sae.architectures import create_sae
    from greyglass.sae.config import MatryoshkaConfig, SAEConfig, TopKConfig

    config = TopKConfig(k=k) if arch == "topk" else MatryoshkaConfig(k=k)
    sae = create_sae(SAEConfig(arch=config, d_in=d_in, d_sae=d_sae, norm_scale=1.0)).to(device)
    opt = torch.optim.Adam(sae.parameters(), lr=1e-4)

    def step(x):
        out = sae(x)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        sae.after_step()

    return step


def naive_step(d_in: int, d_sae: int, k: int, device: str, arch: str = "topk"):
    sae = NaiveTopK(d_in, d_sae, k).to(device)
    opt = torch.optim.Adam(sae.parameters(), lr=1e-4)

    def step(x):
        loss = sae.loss(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sae.after_step()

    return step


def saelens_step(d_in: int, d_sae: int, k: int, device: str, arch: str = "topk"):
    """SAELens 6's TopK (or matryoshka_batchtopk) training SAE, one `training_forward_pass` per step (AuxK off)."""
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.saes.sae import TrainStepInput

    if arch == "topk":
        sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=k, device=device, dtype="float32"))
    else:
        from sae_lens import MatryoshkaBatchTopKTrainingSAE, MatryoshkaBatchTopKTrainingSAEConfig
        from greyglass.sae.config import MatryoshkaConfig

        widths = list(MatryoshkaConfig(k=k).prefix_widths(d_sae))  # the same nesting as greyglass's
        sae = MatryoshkaBatchTopKTrainingSAE(MatryoshkaBatchTopKTrainingSAEConfig(
            d_in=d_in, d_sae=d_sae, k=k, matryoshka_widths=widths, device=device, dtype="float32"))
    opt = torch.optim.Adam(sae.parameters(), lr=1e-4)

    # TrainStepInput grew fields across SAELens 6 releases; pass the ones this version has.
    optional = {"n_training_steps": 0, "is_logging_step": False}
    fields = inspect.signature(TrainStepInput).parameters
    extra = {k: v for k, v in optional.items() if k in fields}

    def step(x):
        inp = TrainStepInput(sae_in=x, coefficients={}, dead_neuron_mask=None, **extra)
        out = sae.training_forward_pass(inp)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()

    return step


METHODS = {"greyglass": greyglass_step, "naive_dense": naive_step, "saelens": saelens_step}


def saelens_available() -> bool:
    try:
        import sae_lens  # noqa: F401
    except ImportError:
        return False
    return True


def activations(args) -> torch.Tensor:
    """`[steps * batch, d_in]` activations: from a store when given, else seeded Gaussian data."""
    n = args.batch * args.steps
    if args.store:
        from greyglass.activations import store_windows
        from greyglass.store.reader import ActivationStore

        store = ActivationStore(args.store)
        rows = torch.cat([w.rows()[store.site()] for w in store_windows(store, [store.site()])])[:n].float()
        return rows.repeat(-(-n // len(rows)), 1)[:n]
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, args.d_in, generator=gen) * 4 + torch.randn(args.d_in, generator=gen)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def tokens_per_second(steps: dict, x: torch.Tensor, batch: int, device: str, rounds: int = 1) -> dict[str, float]:
    """Each method's training tokens/s over `x`: the median of `rounds` timed passes, the methods
    taking turns within each round, so a change in a shared machine's load hits all of them alike."""
    batches = [x[i : i + batch].to(device) for i in range(0, len(x), batch)]
    for step in steps.values():
        step(batches[0])  # warm-up
    seconds: dict[str, list[float]] = {m: [] for m in steps}
    for _ in range(rounds):
        for m, step in steps.items():
            _sync(device)
            start = time.perf_counter()
            for b in batches:
                step(b)
            _sync(device)
            seconds[m].append(time.perf_counter() - start)
    return {m: len(x) / statistics.median(t) for m, t in seconds.items()}


def peak_rss_mib(method: str, args, d_sae: int) -> float | None:
    """Peak RSS of a fresh process running `method` for a few steps on the same kind of data.

    A small fresh parent launches it and reads RUSAGE_CHILDREN: a child forked from this
    (large) process would inherit our peak RSS in its own figure.
    """
    cmd = [sys.executable, __file__, "--child", method, "--arch", args.arch, "--d-in", str(args.d_in), "--d-sae", str(d_sae),
           "--k", str(args.k), "--batch", str(args.batch), "--steps", "3", "--device", args.device]
    parent = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
              "stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")
    done = subprocess.run([sys.executable, "-c", parent, *cmd], capture_output=True, text=True)
    if done.returncode != 0:
        return None
    return round(float(done.stdout.strip().splitlines()[-1]), 1)


def child(args) -> None:
    step = METHODS[args.child](args.d_in, args.d_sae[0], args.k, args.device, args.arch)
    x = activations(args)
    tokens_per_second({args.child: step}, x, args.batch, args.device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", choices=["topk", "matryoshka"], default="topk")
    p.add_argument("--d-in", type=int, default=576)
    p.add_argument("--d-sae", type=int, nargs="+", default=[4608, 9216])
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3, help="timed passes per method, taken in turns (median)")
    p.add_argument("--store", help="read activations from this store instead of Gaussian data")
    p.add_argument("--device", default="cpu")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--child", choices=list(METHODS), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    torch.manual_seed(0)
    x = activations(args)
    have_saelens = saelens_available()
    # the naive dense variant is a TopK: it has no Matryoshka counterpart
    methods = [m for m in METHODS if (m != "saelens" or have_saelens) and (m != "naive_dense" or args.arch == "topk")]
    report: dict = {"arch": args.arch, "device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "machine": platform.machine(), "d_in": args.d_in, "k": args.k, "batch": args.batch,
                    "steps": args.steps, "rounds": args.rounds, "data": args.store or "gaussian", "results": []}
    if not have_saelens:
        report["saelens"] = ("not measured: sae_lens is not importable here; install it into a separate "
                             "environment (pip install sae-lens) and rerun to get the SAELens figure")
    for d_sae in args.d_sae:
        row: dict = {"d_sae": d_sae}
        steps = {}
        for m in methods:
            try:
                steps[m] = METHODS[m](args.d_in, d_sae, args.k, args.device, args.arch)
                steps[m](x[: args.batch].to(args.device))
            except Exception as e:  # SAELens's API moves between versions; say so instead of crashing
                row[f"{m}_error"] = f"{type(e).__name__}: {e}"
                steps.pop(m, None)
        for m, speed in tokens_per_second(steps, x, args.batch, args.device, args.rounds).items():
            row[f"{m}_tokens_per_s"] = round(speed, 1)
        g = row.get("greyglass_tokens_per_s")
        for m in methods[1:]:
            if g and row.get(f"{m}_tokens_per_s"):
                row[f"ratio_greyglass_over_{m}"] = round(g / row[f"{m}_tokens_per_s"], 2)
        if not args.skip_memory:
            for m in methods:
                row[f"{m}_peak_rss_mib"] = peak_rss_mib(m, args, d_sae)
        report["results"].append(row)
        print(json.dumps(row), file=sys.stderr)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
