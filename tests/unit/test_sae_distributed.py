"""`sae train` on two processes (torch.distributed, gloo on the CPU) from a tiny model's store.

Data parallel: each rank reads every other shard of the store in batches of half the batch size, and
the gradients are averaged, so the run is the one-process run on the two ranks' batches put together
(`_together`), up to the order of floating-point sums: most weights are bit-equal, and no weight
differs by more than `TOLERANCE` times its tensor's mean magnitude (Adam turns the last-bit
difference of a near-zero gradient into a step of up to lr).
Sites spread over ranks: each rank trains its sites' SAEs on the whole batch (gathered), so the SAEs
are those of one process on the same batches. A rank that dies makes the other fail with a clear
error, and the last checkpoint resumes.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from greyglass.data import CorpusConfig
from greyglass.sae.config import TrainConfig, TrainRunConfig
from greyglass.sae.distributed import Ranks
from greyglass.sae.train import CHECKPOINT, train_saes, training_source
from greyglass.store.config import CaptureConfig
from greyglass.store.writer import capture

pytestmark = pytest.mark.slow  # two subprocesses per run, each importing torch (~10 s on a loaded machine)

SITES = ("blocks.1.hook_resid_post", "blocks.2.hook_resid_post")
SRC = str(Path(__file__).resolve().parents[2] / "src")
STEPS = 60
TOLERANCE = 1e-2
"""Largest difference of a weight between the two-process and the one-process run after `STEPS` steps, relative
to its tensor's mean magnitude (measured: 3e-4 after 12 steps, 5e-3 after 400); the median difference is 1e-7."""


@pytest.fixture(scope="module")
def store(tiny_llama, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp-store") / "s"
    capture(tiny_llama, CaptureConfig(sites=SITES, tokens=4000, batch_tokens=256, shard_tokens=500),
            CorpusConfig(context_size=32, split="train"), out, progress=False)
    return out


def _flags(store, out, tokens=128 * STEPS, every=128 * 4):
    return ["sae", "train", "--store", str(store), "--k", "4", "--expansion", "2", "--tokens", str(tokens),
            "--batch-size", "128", "--lr", "1e-3", "--warmup-steps", "2", "--buffer-tokens", "512",
            "--checkpoint-every", str(every), "--dist-timeout", "60", "--no-progress", "--out", str(out)]


def _config(store, tokens=128 * STEPS, every=128 * 4, **extra):
    return TrainRunConfig(store=str(store), ks=(4,), expansion=2, **extra,
                          train=TrainConfig(tokens=tokens, batch_size=128, lr=1e-3, warmup_steps=2, buffer_tokens=512,
                                            checkpoint_every=every))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ranks(flags, world=2):
    """Start `greyglass` on `world` processes with the environment torchrun gives each rank."""
    port = _free_port()
    procs = []
    for rank in range(world):
        env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "RANK": str(rank), "LOCAL_RANK": str(rank),
               "WORLD_SIZE": str(world), "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen([sys.executable, "-m", "greyglass", *flags], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    return procs


def _finish(procs, timeout=120):
    outs = [p.communicate(timeout=timeout) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    return outs


def _together(cfg, world=2):
    """What one process trains on the ranks' batches put together, rank by rank (as the ranks' gradients are)."""
    parts = [training_source(None, cfg, Ranks(rank, world)).batches for rank in range(world)]
    return ({s: torch.cat([p[s] for p in batch]) for s in batch[0]} for batch in zip(*parts))


def _reference(cfg, out):
    one = training_source(None, cfg)
    saes = cfg.sae_configs(one.sites, one.d_in, **one.facts)
    return train_saes(saes, cfg.train, _together(cfg), out, progress=False)


def _close(a, b, tolerance):
    wa, wb = load_file(str(a / "sae_weights.safetensors")), load_file(str(b / "sae_weights.safetensors"))
    assert wa.keys() == wb.keys()
    for name in wa:
        scale = wb[name].abs().mean().item()
        torch.testing.assert_close(wa[name], wb[name], rtol=0, atol=tolerance * scale, msg=f"{a.name} {name}")


@pytest.fixture(scope="module")
def two_ranks(store, tmp_path_factory):
    """An uninterrupted two-process run."""
    out = tmp_path_factory.mktemp("ddp") / "run"
    _finish(_ranks(_flags(store, out)))
    return out


def test_two_ranks_train_the_sae_one_process_trains_on_their_batches(store, two_ranks, tmp_path):
    ref = _reference(_config(store), tmp_path / "one")
    results = json.loads((two_ranks / "results.json").read_text())
    assert [s["folder"] for s in results["saes"]] == [f.name for f in ref.folders] and results["tokens"] == 128 * STEPS
    for folder in ref.folders:
        _close(two_ranks / folder.name, folder, TOLERANCE)
    assert not (two_ranks / CHECKPOINT).exists()


def test_a_dead_rank_is_a_clear_error_and_the_checkpoint_resumes(store, two_ranks, tmp_path):
    out = tmp_path / "run"
    procs = _ranks(_flags(store, out))
    deadline = time.monotonic() + 90
    while not (out / CHECKPOINT / "state.json").is_file():
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), procs[0].stderr.read()
        time.sleep(0.02)
    procs[1].send_signal(signal.SIGKILL)
    start = time.monotonic()
    _, err = procs[0].communicate(timeout=60)
    assert procs[0].returncode == 2 and time.monotonic() - start < 30  # not a hang until the 60 s timeout
    assert "lost the other ranks" in err and "rerun with --resume" in err and "Traceback" not in err, err
    step = json.loads((out / CHECKPOINT / "state.json").read_text())["step"]
    assert 0 < step < STEPS
    _finish(_ranks([*_flags(store, out), "--resume"]))
    for folder in (two_ranks / r["folder"] for r in json.loads((two_ranks / "results.json").read_text())["saes"]):
        a = load_file(str(folder / "sae_weights.safetensors"))
        b = load_file(str(out / folder.name / "sae_weights.safetensors"))
        assert all(torch.equal(a[n], b[n]) for n in a)  # resuming is exact on two ranks as on one


def test_sites_spread_over_ranks_train_the_saes_one_process_trains(store, tmp_path):
    _finish(_ranks([*_flags(store, tmp_path / "spread"), "--distribute-sites"]))
    for folder in _reference(_config(store), tmp_path / "one").folders:
        a = load_file(str(folder / "sae_weights.safetensors"))
        b = load_file(str(tmp_path / "spread" / folder.name / "sae_weights.safetensors"))
        assert all(torch.equal(a[n], b[n]) for n in a), folder.name  # the same rows, the same arithmetic
