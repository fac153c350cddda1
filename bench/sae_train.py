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

On a GPU (`--device cuda`, run in the environment that has SAELens, e.g. .venv-saelens) the
same step comparison runs on that GPU, both sides in float32, data already on the device.

    python bench/sae_train.py [--arch topk|matryoshka] [--d-in 576] [--d-sae 4608 9216] [--k 32] [--batch 4096]
        [--steps 8] [--rounds 3] [--store runs/demo/capture] [--device cpu|cuda] [--skip-memory]

Scaling out (`--mode`), `greyglass sae train` end to end on a real model (default SmolLM2-135M):
  --mode sites: the SAEs of --layers trained from one forward pass per batch against one run per
      layer: model forwards counted (a hook on the model), SAE tokens/s (layers x tokens / s) and
      the ratio separate / together in wall time;
  --mode ddp: one --site from a store, one process (one thread, and all threads) against two
      gloo processes (torchrun, cores / 2 threads each): training tokens/s of each and the ratios.

    python bench/sae_train.py --mode sites [--model smollm2-135m-instruct] [--layers 0-5] [--tokens 8192]
    python bench/sae_train.py --mode ddp [--model smollm2-135m-instruct] [--tokens 65536]
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


def _train_flags(args, out) -> list[str]:
    """`sae train` flags of the DDP benchmark."""
    return ["--k", str(args.k), "--expansion", str(args.expansion), "--tokens", str(args.tokens),
            "--batch-size", str(args.train_batch), "--buffer-tokens", str(4 * args.train_batch), "--no-progress",
            "--out", str(out)]


def bench_sites(args, work) -> dict:
    """--layers from one forward pass per batch against one run per layer, on the fly (the model loaded once)."""
    from greyglass.data import CorpusConfig
    from greyglass.models.loader import load_model
    from greyglass.sae.config import TrainConfig, TrainRunConfig, parse_layers
    from greyglass.sae.train import run_train

    lm = load_model(args.model)
    forwards = [0]
    lm.model.register_forward_pre_hook(lambda *_: forwards.__setitem__(0, forwards[0] + 1))
    train = TrainConfig(tokens=args.tokens, batch_size=args.train_batch, buffer_tokens=4 * args.train_batch)

    def timed(out, **sites) -> tuple[float, int]:
        cfg = TrainRunConfig(**sites, ks=(args.k,), expansion=args.expansion, train=train,
                             corpus=CorpusConfig(context_size=128, split="train"))
        forwards[0], start = 0, time.perf_counter()
        run_train(lm, cfg, out, progress=False)
        return time.perf_counter() - start, forwards[0]

    layers = parse_layers(args.layers)
    together_s, together_f = timed(work / "together", layers=args.layers)
    separate = [timed(work / f"alone{i}", sites=(f"resid_post.{i}",)) for i in layers]
    separate_s, separate_f = sum(t for t, _ in separate), sum(f for _, f in separate)
    sae_tokens = len(layers) * args.tokens
    return {"mode": "sites", "model": args.model, "sites": len(layers), "layers": args.layers, "tokens": args.tokens,
            "batch": args.train_batch, "d_sae": args.expansion * lm.d_model, "k": args.k,
            "together_seconds": round(together_s, 1), "separate_seconds": round(separate_s, 1),
            "together_model_forwards": together_f, "separate_model_forwards": separate_f,
            "together_sae_tokens_per_s": round(sae_tokens / together_s, 1),
            "separate_sae_tokens_per_s": round(sae_tokens / separate_s, 1),
            "ratio_separate_over_together_seconds": round(separate_s / together_s, 2)}


def bench_ddp(args, work) -> dict:
    """One process against two gloo processes (torchrun) on the same store and settings."""
    import os

    from greyglass.data import CorpusConfig
    from greyglass.models.loader import load_model
    from greyglass.store.config import CaptureConfig
    from greyglass.store.writer import capture

    store = work / "store"
    capture(load_model(args.model), CaptureConfig(sites=(args.site,), tokens=args.store_tokens, batch_tokens=2048,
                                                  shard_tokens=2048), CorpusConfig(context_size=128, split="train"),
            store, progress=False)
    cores = os.cpu_count() or 1
    one, two = [sys.executable, "-m", "greyglass"], [sys.executable, "-m", "torch.distributed.run",
                                                     "--nproc_per_node", "2", "-m", "greyglass"]
    runs = {"one_process_one_thread": (one, 1), "one_process": (one, cores), "two_processes": (two, max(1, cores // 2))}
    row: dict = {"mode": "ddp", "model": args.model, "site": args.site, "tokens": args.tokens, "cores": cores,
                 "d_sae": None, "batch": args.train_batch}
    for name, (launcher, threads) in runs.items():
        out = work / name
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        subprocess.run([*launcher, "sae", "train", "--store", str(store), *_train_flags(args, out)], check=True,
                       env=env, stdout=subprocess.DEVNULL)
        results = json.loads((out / "results.json").read_text())
        row[f"{name}_tokens_per_s"] = results["tokens_per_second"]
        row["d_sae"] = results["saes"][0]["d_sae"]
    for one_name in ("one_process", "one_process_one_thread"):
        row[f"ratio_two_processes_over_{one_name}"] = round(row["two_processes_tokens_per_s"]
                                                            / row[f"{one_name}_tokens_per_s"], 2)
    return row


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
    p.add_argument("--mode", choices=["step", "sites", "ddp"], default="step")
    p.add_argument("--model", default="smollm2-135m-instruct", help="--mode sites|ddp: the model")
    p.add_argument("--layers", default="0-5", help="--mode sites: the layers (a range)")
    p.add_argument("--site", default="resid_post.15", help="--mode ddp: the site")
    p.add_argument("--tokens", type=int, default=8192, help="--mode sites|ddp: training tokens per SAE")
    p.add_argument("--store-tokens", type=int, default=16384, help="--mode ddp: tokens captured (read again)")
    p.add_argument("--train-batch", type=int, default=1024, help="--mode sites|ddp: --batch-size")
    p.add_argument("--expansion", type=int, default=4, help="--mode sites|ddp: d_sae / d_in")
    args = p.parse_args()
    if args.child:
        child(args)
        return
    if args.mode != "step":
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as work:
            row = (bench_sites if args.mode == "sites" else bench_ddp)(args, Path(work))
        row |= {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine()}
        print(json.dumps(row, indent=2))
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
