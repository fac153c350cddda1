"""The foundation on the real embedded default model, SmolLM2-135M-Instruct."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from greyglass import GreyglassError
from greyglass.fingerprint import file_sha256
from greyglass.models.hooks import run_to_sites
from greyglass.models.loader import EMBEDDED, _embedded_path, load_model


def test_default_model_facts(smollm):
    assert (smollm.n_layers, smollm.d_model) == (30, 576)
    assert smollm.is_chat and smollm.dtype == torch.float32
    assert smollm.family.attn_out == "self_attn"
    gguf = _embedded_path("smollm2-135m-instruct")
    assert gguf.name == EMBEDDED["smollm2-135m-instruct"].filename
    assert smollm.sha256 == file_sha256(gguf)


def test_resid_post_equals_output_hidden_states_exactly(smollm):
    ids = smollm.tokenizer(["The Golden Gate Bridge is in", "Paris is the capital of"],
                           return_tensors="pt", padding=True).input_ids
    layers = [0, 7, 15, 28]
    acts = run_to_sites(smollm, ids, [f"resid_post.{l}" for l in layers])
    with torch.inference_mode():
        hidden = smollm.model(ids, output_hidden_states=True).hidden_states
    for layer in layers:
        assert torch.equal(acts[f"blocks.{layer}.hook_resid_post"], hidden[layer + 1])


def test_early_stop_really_stops(smollm):
    fired = []
    last = smollm.blocks[-1].register_forward_hook(lambda *_: fired.append("last"))
    head = smollm.unembed.register_forward_hook(lambda *_: fired.append("head"))
    try:
        ids = smollm.tokenizer("hello there", return_tensors="pt").input_ids
        run_to_sites(smollm, ids, ["resid_post.15"])
        assert fired == []
        with torch.inference_mode():
            smollm.model(ids)
        assert fired == ["last", "head"]
    finally:
        last.remove()
        head.remove()


def test_each_windows_first_token_is_the_outlier_that_sae_data_leaves_out(smollm):
    from greyglass.data.corpus import CorpusConfig, windows

    window = next(windows(smollm.tokenizer, CorpusConfig(context_size=64), smollm.prepend_bos))
    assert not smollm.prepend_bos and window.is_sink == [True] + [False] * 63
    norms = run_to_sites(smollm, torch.tensor([window.tokens]), ["resid_post.15"])["blocks.15.hook_resid_post"][0].norm(dim=-1)
    assert norms[0] > 20 * norms[1:].max()  # the attention sink: kept, it would dominate any squared error


def test_gguf_file_path_loads_the_same_weights(smollm):
    lm = load_model(str(_embedded_path("smollm2-135m-instruct")))
    assert lm.sha256 == smollm.sha256
    assert torch.equal(lm.model.lm_head.weight, smollm.model.lm_head.weight)


def test_hub_id_without_network_is_one_clear_error():
    start = time.perf_counter()
    with pytest.raises(GreyglassError, match="could not load model 'someorg/some-model'") as e:
        load_model("someorg/some-model")
    assert "\n" not in str(e.value) and time.perf_counter() - start < 30


def _capture_cmd(out: Path) -> list[str]:
    return [sys.executable, "-m", "greyglass.cli", "capture", "--site", "resid_post.5", "--tokens", "6000",
            "--context-size", "64", "--batch-tokens", "512", "--shard-tokens", "1000", "--out", str(out),
            "--no-progress"]


@pytest.mark.slow
def test_killed_capture_resumes_to_identical_shards(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(_capture_cmd(whole), check=True, env=env, capture_output=True)
    proc = subprocess.Popen(_capture_cmd(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "shard_00001.safetensors").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "results.json").exists()
    done = subprocess.run(_capture_cmd(killed) + ["--resume"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    shards = sorted(p.name for p in whole.glob("shard_*.safetensors"))
    assert shards == sorted(p.name for p in killed.glob("shard_*.safetensors")) and len(shards) >= 5
    for name in shards:
        assert (whole / name).read_bytes() == (killed / name).read_bytes(), name


@pytest.mark.slow
def test_gemma3_base_model_loads_with_its_sites():
    lm = load_model("gemma3-270m")
    assert (lm.n_layers, lm.d_model) == (18, 640)
    assert not lm.is_chat and lm.prepend_bos
    assert lm.family.attn_out == "post_attention_layernorm"
    ids = lm.tokenizer("The Golden Gate Bridge is in", return_tensors="pt").input_ids
    acts = run_to_sites(lm, ids, ["resid_post.8", "attn_out.9", "mlp_out.9", "resid_post.9"])
    with torch.inference_mode():
        hidden = lm.model(ids, output_hidden_states=True).hidden_states
    assert torch.equal(acts["blocks.8.hook_resid_post"], hidden[9])
    update = acts["blocks.9.hook_attn_out"] + acts["blocks.9.hook_mlp_out"]
    torch.testing.assert_close(hidden[9] + update, acts["blocks.9.hook_resid_post"])
