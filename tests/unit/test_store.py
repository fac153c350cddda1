"""Capture to an activation store and read it back, on a tiny model."""

import json

import pytest
import torch
from safetensors.torch import load_file

from greyglass import GreyglassError
from greyglass.cli import main
from greyglass.activations import shuffled_rows, store_windows
from greyglass.data import CorpusConfig, windows
from greyglass.models.dtypes import DTYPES, torch_dtype
from greyglass.models.hooks import run_to_sites
from greyglass.models.loader import load_model
from greyglass.store.config import CaptureConfig
from greyglass.store.reader import ActivationStore
from greyglass.store.writer import capture
from greyglass.store import writer as capture_module

SITES = ("resid_post.2", "blocks.1.hook_mlp_out")
CFG = CaptureConfig(sites=SITES, tokens=3000, batch_tokens=256, shard_tokens=700)
CORPUS = CorpusConfig(context_size=32)


@pytest.fixture(scope="module")
def store(tiny_llama, tmp_path_factory):
    out = tmp_path_factory.mktemp("store") / "s"
    capture(tiny_llama, CFG, CORPUS, out, progress=False)
    return ActivationStore(out)


def test_manifest_and_rows(store, tiny_llama):
    m = store.manifest
    assert store.complete and store.n_tokens == 3000
    assert store.sites == ["blocks.2.hook_resid_post", "blocks.1.hook_mlp_out"]
    assert m["d_model"] == 64 and m["context_size"] == 32 and m["model"]["sha256"] == tiny_llama.sha256
    assert sum(s["rows"] for s in m["shards"]) == 3000 and len(m["shards"]) > 3


def test_stored_values_equal_a_direct_forward_pass(store, tiny_llama):
    first = list(__import__("itertools").islice(windows(tiny_llama.tokenizer, CORPUS, True), 8))
    ids = torch.tensor([w.tokens for w in first])
    acts = run_to_sites(tiny_llama, ids, SITES)["blocks.2.hook_resid_post"][:, 1:]  # BOS dropped
    shard = load_file(str(store.folder / store.manifest["shards"][0]["file"]))
    n = acts.shape[0] * acts.shape[1]
    assert torch.equal(shard["blocks.2.hook_resid_post"][:n], acts.reshape(n, -1))
    assert torch.equal(shard["token_ids"][:n], ids[:, 1:].reshape(-1).to(torch.int32))
    assert shard["pos"][:31].tolist() == list(range(1, 32))
    assert shard["doc"][:n].tolist() == [d for w in first for d in w.docs[1:]]


def _first_rows(store, site, n):
    """The store's first `n` rows of `site` in written order."""
    return next(store_windows(store, [site])).rows()[store.site(site)][:n]


def test_shuffled_rows_of_a_store_cover_every_row_once(store):
    site = store.site("resid_post.2")
    rows = lambda seed: shuffled_rows(lambda e: store_windows(store, [site], shard_seed=seed), 256, buffer_rows=700,
                                      seed=seed, epochs=1, drop_last=False)
    seen = torch.cat([b[site] for b in rows(3)])
    seq = torch.cat([w.rows()[site] for w in store_windows(store, [site])])
    assert len(seen) == len(seq) == 3000
    assert not torch.equal(seen, seq)
    assert torch.equal(seen.sort(0).values, seq.sort(0).values)
    assert all(len(b[site]) == 256 for b in shuffled_rows(lambda e: store_windows(store, [site]), 256, 700, epochs=1))


def test_store_windows_read_one_shard_at_a_time(store, monkeypatch):
    reads = []
    original = ActivationStore.read_shard
    monkeypatch.setattr(ActivationStore, "read_shard", lambda self, i, keys: reads.append(i) or original(self, i, keys))
    next(store_windows(store, ["resid_post.2"], batch_windows=2))
    assert len(reads) == 1 < len(store.manifest["shards"])


def test_resume_after_a_crash_gives_identical_shards(store, tiny_llama, tmp_path, monkeypatch, capsys):
    out = tmp_path / "crashy"
    real_save, calls = capture_module.save_file, []

    def crash_on_third(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if Ctrl-C or a kill landed mid-write
        real_save(tensors, path, metadata=metadata)

    monkeypatch.setattr(capture_module, "save_file", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        capture(tiny_llama, CFG, CORPUS, out, progress=False)
    monkeypatch.setattr(capture_module, "save_file", real_save)
    partial = json.loads((out / "manifest.json").read_text())
    assert len(partial["shards"]) == 2 and not partial["complete"]
    assert not list(out.glob("*.tmp"))
    assert main(["info", str(out)]) == 0  # an unfinished store is described from its manifest
    said = capsys.readouterr().out
    assert f"activation store {out}: incomplete (continue with --resume)" in said and "3,000 requested" in said
    with pytest.raises(GreyglassError, match="--resume"):
        capture(tiny_llama, CFG, CORPUS, out, progress=False)
    capture(tiny_llama, CFG, CORPUS, out, resume=True, progress=False)
    resumed = ActivationStore(out)
    assert resumed.manifest["shards"] == store.manifest["shards"]
    for entry in store.manifest["shards"]:
        assert (out / entry["file"]).read_bytes() == (store.folder / entry["file"]).read_bytes()


def test_resume_refuses_different_settings(store, tiny_llama, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(store.folder, out)
    other = CaptureConfig(sites=("resid_post.1",), tokens=3000, batch_tokens=256, shard_tokens=700)
    with pytest.raises(GreyglassError, match="cannot resume .*sites"):
        capture(tiny_llama, other, CORPUS, out, resume=True, progress=False)


def test_corrupt_and_missing_shards_are_named(store, tmp_path):
    import shutil

    out = tmp_path / "broken"
    shutil.copytree(store.folder, out)
    broken = ActivationStore(out)
    first, second = broken.manifest["shards"][0]["file"], broken.manifest["shards"][1]["file"]
    (out / first).write_bytes((out / first).read_bytes()[:100])
    with pytest.raises(GreyglassError, match=f"shard .*{first} is corrupt"):
        list(store_windows(broken, ["resid_post.2"]))
    (out / second).unlink()
    with pytest.raises(GreyglassError, match=f"shard .*{second} is missing"):
        broken.read_shard(1, ["token_ids"])


def test_store_errors(tmp_path, store):
    with pytest.raises(GreyglassError, match="does not exist"):
        ActivationStore(tmp_path / "nothing")
    with pytest.raises(GreyglassError, match="has no site blocks.3.hook_resid_post"):
        store.site("resid_post.3")
    with pytest.raises(GreyglassError, match="several sites"):
        store.site()
    with pytest.raises(GreyglassError, match="store_dtype"):
        CaptureConfig(store_dtype="int8")  # type: ignore[arg-type]


def test_models_and_stores_share_one_dtype_table():
    assert [torch_dtype(name) for name in DTYPES] == [torch.float32, torch.bfloat16, torch.float16]
    assert [CaptureConfig(store_dtype=name).store_dtype for name in DTYPES] == list(DTYPES)
    with pytest.raises(GreyglassError, match="dtype 'int8' is not allowed; choose one of float32, bfloat16, float16"):
        load_model("smollm2-135m-instruct", dtype="int8")  # the name is checked before anything loads


def test_bfloat16_storage_halves_the_bytes(tiny_llama, tmp_path, store):
    cfg = CaptureConfig(sites=SITES, tokens=3000, batch_tokens=256, shard_tokens=700, store_dtype="bfloat16")
    out = capture(tiny_llama, cfg, CORPUS, tmp_path / "bf16", progress=False)
    half = ActivationStore(out)
    act, ref = _first_rows(half, "resid_post.2", 64), _first_rows(store, "resid_post.2", 64)
    assert act.dtype == torch.bfloat16
    torch.testing.assert_close(act.float(), ref, atol=0.05, rtol=0.02)


def test_the_demo_capture_step_runs_the_capture_job_and_resumes(tiny_llama, tmp_path, capsys):
    from greyglass.demo import demo_runs, run_demo
    from greyglass.report.build import section_for

    capture = demo_runs(tmp_path, tiny_llama.n_layers, 300)[:1]
    assert capture[0].name == "capture"
    run_demo(tiny_llama, tmp_path, capture)
    assert section_for(tmp_path / "capture").summary() in capsys.readouterr().out
    store = ActivationStore(tmp_path / "capture")
    assert store.n_tokens == 300 and store.sites == ["blocks.2.hook_resid_post"]
    assert store.manifest["corpus"]["split"] == "train"  # the held-out documents stay out, for the SAE step
    run_demo(tiny_llama, tmp_path, capture)  # an interrupted or repeated demo continues the store instead of failing
    assert "300 of 300 requested" in capsys.readouterr().out
