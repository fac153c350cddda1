"""Interrupted jobs (issue 22; docs/reliability.md): `greyglass capture`, `sae train`, `diff train`, `eval`,
`eval-cot`, `eval-pressure` and `redteam` run as subprocesses on a tiny random model, killed with SIGINT
(Ctrl-C) or SIGKILL at a random point of their progress, then finished in-process with `--resume`. The
result must equal an uninterrupted run's bit for bit, and what the killed process left must never read as
complete: the store's manifest lists only whole shards and says it is incomplete, no SAE or crosscoder
folder exists before training ends, and an eval (of any kind, red teaming too) has neither its rows file
(`items.jsonl`, `cases.jsonl`) nor `results.json` before it finishes. (`features build` and `organism
train` do not resume: each writes its output whole, at the end; `trend` resumes through its `eval` sub-runs.)
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import greyglass
from greyglass.cli import main

SITE = "blocks.1.hook_resid_post"
TOKENS = 2400
TRAIN_TOKENS = 64 * 240
DIFF_TOKENS = 64 * 60
EVAL_ITEMS = 80  # --limit 20: each question with and without the biography, in both answer orders
SIGNALS = [signal.SIGINT, signal.SIGKILL]
pytestmark = pytest.mark.slow  # a subprocess each, which imports torch and transformers (~10 s on a loaded machine)


def capture_args(model: Path, out: Path) -> list[str]:
    return ["capture", "--model", str(model), "--site", SITE, "--tokens", str(TOKENS), "--batch-tokens", "64",
            "--shard-tokens", "256", "--context-size", "16", "--out", str(out), "--no-progress"]


def train_args(store: Path, out: Path) -> list[str]:
    return ["sae", "train", "--store", str(store), "--d-sae", "64", "--k", "4", "--tokens", str(TRAIN_TOKENS),
            "--batch-size", "64", "--checkpoint-every", "320", "--out", str(out), "--no-progress"]


def diff_args(model: Path, out: Path) -> list[str]:
    return ["diff", "train", "--model-a", str(model), "--model-b", str(model), "--site", SITE, "--expansion", "2",
            "--k", "4", "--tokens", str(DIFF_TOKENS), "--batch-size", "64", "--buffer-tokens", "256",
            "--context-size", "16", "--checkpoint-every", "320", "--out", str(out), "--no-progress"]


@pytest.fixture(scope="module")
def done(tmp_path_factory, tiny_llama):
    """A tiny model folder and, uninterrupted, its capture and an SAE trained on it."""
    root = tmp_path_factory.mktemp("interrupt")
    tiny_llama.model.save_pretrained(root / "model")
    tiny_llama.tokenizer.save_pretrained(root / "model")
    assert main(capture_args(root / "model", root / "store")) == 0
    assert main(train_args(root / "store", root / "sae")) == 0
    assert main(diff_args(root / "model", root / "crosscoder")) == 0
    return root


def eval_args(model: Path, out: Path) -> list[str]:
    return ["eval", "--model", str(model), "--limit", "20", "--batch-size", "2", "--out", str(out), "--no-progress"]


def cot_args(model: Path, out: Path) -> list[str]:
    return ["eval-cot", "--model", str(model), "--limit", "12", "--max-cot-tokens", "8", "--out", str(out),
            "--no-progress"]


def pressure_args(model: Path, out: Path) -> list[str]:
    return ["eval-pressure", "--model", str(model), "--samples", "20", "--max-tokens", "8", "--out", str(out),
            "--no-progress"]


def redteam_args(model: Path, out: Path) -> list[str]:
    return ["redteam", "--model", str(model), "--failure", "agree_false", "--rounds", "2", "--cases", "3",
            "--answers", "2", "--target-temperature", "1.0", "--batch-size", "2", "--max-case-tokens", "5",
            "--max-answer-tokens", "5", "--n-bootstrap", "30", "--out", str(out), "--no-progress"]


EVALS = {"eval": (eval_args, EVAL_ITEMS, "items"), "eval-cot": (cot_args, 12, "items"),
         "eval-pressure": (pressure_args, 40, "items"),  # insider-trading: each sample with and without the ethics line
         "redteam": (redteam_args, 18, "cases")}  # 3 zero-shot cases, then 3 zero-shot and 3 few-shot; 2 answers each
"""The resumable evals: their arguments, how many rows (items, problems, samples, answers) a run has, and the stem
of its rows file (`<stem>.jsonl` when finished, `<stem>.partial.jsonl` before)."""


@pytest.fixture(scope="module")
def eval_done(tmp_path_factory):
    """A tiny chat model folder and `reference(command)`: that eval of it, uninterrupted (run once)."""
    from greyglass.models.tiny import tiny_model

    root = tmp_path_factory.mktemp("interrupt-eval")
    chat = tiny_model("llama", chat=True)
    chat.model.save_pretrained(root / "model")
    chat.tokenizer.save_pretrained(root / "model")

    def reference(command: str) -> Path:
        out = root / command
        if not out.exists():
            assert main(EVALS[command][0](root / "model", out)) == 0
        return out

    return root / "model", reference


def _default_sigint() -> None:
    """In the child, before exec: SIGINT back to its default, as a terminal starts a command. A test runner that is
    a background job of a non-interactive shell (`make test &`) ignores SIGINT, the child would inherit that, and
    Python then installs no KeyboardInterrupt handler: the Ctrl-C under test would never arrive."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def kill_when(args: list[str], ready, sig: int) -> None:
    """Run the CLI in a subprocess; send `sig` once `ready()` is true; wait for it to end."""
    # The same thread count as this process, whose uninterrupted run is the reference: a CPU matmul's
    # reduction order, and so the last bits of a log-probability, depend on it.
    env = {**os.environ, "PYTHONPATH": str(Path(greyglass.__file__).parents[1]),
           "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen([sys.executable, "-m", "greyglass.cli", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_default_sigint)
    deadline = time.monotonic() + 120
    while not ready():
        assert proc.poll() is None, f"it ended before the kill: {proc.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(sig)
    proc.wait(60)
    assert proc.returncode in (130, -sig), (proc.returncode, proc.stderr.read().decode()[-2000:])


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):  # not written yet (written atomically, never half)
        return {}


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _same_files(a: Path, b: Path, names: list[str]) -> None:
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.parametrize("sig", SIGNALS, ids=["SIGINT", "SIGKILL"])
def test_capture_killed_at_a_random_point_resumes_to_the_same_store(done, tmp_path, sig):
    from greyglass.store.reader import ActivationStore

    out = tmp_path / "store"
    at = random.Random(f"capture {sig}").uniform(0.05, 0.6) * TOKENS
    kill_when(capture_args(done / "model", out), lambda: _json(out / "manifest.json").get("n_tokens", 0) >= at, sig)
    cut = ActivationStore(out)
    assert not cut.complete and 0 < cut.n_tokens < TOKENS
    for i, shard in enumerate(cut.manifest["shards"]):  # every listed shard is whole and readable
        assert len(cut.read_shard(i, [SITE])[SITE]) == shard["rows"]
    assert main([*capture_args(done / "model", out), "--resume"]) == 0
    ref, resumed = ActivationStore(done / "store"), ActivationStore(out)
    assert resumed.complete and resumed.manifest["shards"] == ref.manifest["shards"]
    _same_files(out, done / "store", [s["file"] for s in ref.manifest["shards"]])
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


TRAININGS = {"sae train": (lambda root, out: train_args(root / "store", out), TRAIN_TOKENS // 64, "sae",
                           "sae/sae_weights.safetensors"),
             "diff train": (lambda root, out: diff_args(root / "model", out), DIFF_TOKENS // 64, "crosscoder",
                            "crosscoder/crosscoder.safetensors")}
"""The trainings that checkpoint: their arguments (from the `done` folder), steps, the uninterrupted run's folder
in `done`, and the weights file their finished folder holds."""


@pytest.mark.parametrize("command", list(TRAININGS))
@pytest.mark.parametrize("sig", SIGNALS, ids=["SIGINT", "SIGKILL"])
def test_training_killed_at_a_random_point_resumes_to_the_same_weights(done, tmp_path, sig, command):
    args, steps, reference, weights = TRAININGS[command]
    out = tmp_path / "run"
    at = random.Random(f"{command} {sig}").randrange(steps // 10, steps // 2)
    kill_when(args(done, out), lambda: _json(out / "checkpoint" / "state.json").get("step", 0) >= at, sig)
    assert not (out / weights).parent.exists()  # the trained folder appears whole at the end, never before
    assert 0 < _json(out / "checkpoint" / "state.json")["step"] < steps
    assert main([*args(done, out), "--resume"]) == 0
    ref, resumed = load_file(str(done / reference / weights)), load_file(str(out / weights))
    assert ref.keys() == resumed.keys() and all(ref[k].equal(resumed[k]) for k in ref)
    assert not (out / "checkpoint").exists()


@pytest.mark.parametrize("command", list(EVALS))
@pytest.mark.parametrize("sig", SIGNALS, ids=["SIGINT", "SIGKILL"])
def test_eval_killed_at_a_random_point_resumes_to_the_same_items_and_results(eval_done, tmp_path, sig, command):
    from greyglass.behaviour.run import read_partial

    model, reference = eval_done
    args, rows, stem = EVALS[command]
    ref, out = reference(command), tmp_path / "eval"
    at = random.Random(f"{command} {sig}").randrange(max(1, rows // 10), rows // 2)
    kill_when(args(model, out), lambda: _lines(out / f"{stem}.partial.jsonl") >= at, sig)
    assert not (out / f"{stem}.jsonl").exists() and not (out / "results.json").exists()  # nothing reads as finished
    assert 0 < len(read_partial(out / f"{stem}.partial.jsonl")) < rows
    assert main([*args(model, out), "--resume"]) == 0
    _same_files(out, ref, [f"{stem}.jsonl", "results.json"])
    same_config = [{k: v for k, v in _json(run / "config.json").items() if k != "created"} for run in (out, ref)]
    assert same_config[0] == same_config[1]
    assert not (out / f"{stem}.partial.jsonl").exists()
