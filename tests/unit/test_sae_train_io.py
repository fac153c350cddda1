"""SAE training from a tiny store (exact resume, Ctrl-C, several SAEs), folders, the CLI."""

import json
import os
import signal
from dataclasses import asdict, replace

import pytest
import torch
from safetensors.torch import load_file, save_file

from greyglass import GreyglassError
from greyglass.cli import main
from greyglass.data import CorpusConfig
from greyglass.report.build import section_for
from greyglass.sae.architectures import create_sae
from greyglass.sae.config import (ARCHITECTURES, FreqCostConfig, JumpReLUConfig, MatryoshkaConfig, SAEConfig, TopKConfig,
                                  TrainConfig, TrainRunConfig, with_dead_window)
from greyglass.sae.io import load_sae, load_sparsity, read_training, saelens_cfg, save_sae
from greyglass.activations import model_windows, shuffled_rows, store_windows
from greyglass.sae.train import train_saes
from greyglass.store.config import CaptureConfig
from greyglass.store.reader import ActivationStore
from greyglass.store.writer import capture

SITE = "blocks.2.hook_resid_post"
TCFG = TrainConfig(tokens=256 * 12, batch_size=256, lr=1e-3, warmup_steps=2, checkpoint_every=256 * 5)


@pytest.fixture(scope="module")
def store(tiny_llama, tmp_path_factory):
    out = tmp_path_factory.mktemp("sae-store") / "s"
    capture(tiny_llama, CaptureConfig(sites=(SITE, "resid_post.1"), tokens=2000, batch_tokens=256, shard_tokens=500),
            CorpusConfig(context_size=32, split="train"), out, progress=False)
    return ActivationStore(out)


def _cfg(arch="topk", site=SITE, freq_cost=FreqCostConfig(), **settings):
    """An SAE config of `arch` (with these settings of its own, k=8 and k_aux=16 for TopK and BatchTopK)."""
    topk = {"k": 8, "k_aux": 16} if arch in ("topk", "batchtopk", "matryoshka") else {}
    return SAEConfig(arch=ARCHITECTURES[arch](**topk, **settings), d_in=64, d_sae=128, dead_tokens=512, hook_name=site,
                     freq_cost=freq_cost)


def store_rows(store, sites, batch_size):
    """Endless shuffled training rows of a store, as `sae train` reads it."""
    return shuffled_rows(lambda epoch: store_windows(store, sites, shard_seed=epoch), batch_size, buffer_rows=1024)


def _weights(folder):
    return load_file(str(folder / "sae_weights.safetensors"))


def test_train_from_store_writes_a_saelens_folder(store, tmp_path):
    result = train_saes([_cfg()], TCFG, store_rows(store, [SITE], 256), tmp_path / "run", progress=False)
    folder = result.folders[0]
    assert {p.name for p in folder.iterdir()} == {"cfg.json", "sae_weights.safetensors", "sparsity.safetensors",
                                                  "training.json"}
    cfg = json.loads((folder / "cfg.json").read_text())
    assert cfg["architecture"] == "topk" and cfg["k"] == 8 and cfg["d_in"] == 64 and cfg["d_sae"] == 128
    assert cfg["metadata"]["hook_name"] == SITE and cfg["normalize_activations"] == "none"
    w = _weights(folder)
    assert w["W_enc"].shape == (64, 128) and w["W_dec"].shape == (128, 64)
    assert load_sparsity(folder).shape == (128,)
    assert read_training(folder)["sae"]["norm_scale"] > 0
    assert not (tmp_path / "run" / "checkpoint").exists()
    # the loaded (folded) SAE computes the same function of raw activations as the trained one
    x = next(store_windows(store, [SITE])).rows()[SITE][:64]
    loaded = load_sae(folder)
    torch.testing.assert_close(loaded.encode(x), result.saes[0].encode(x), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(loaded.reconstruct(x), result.saes[0].reconstruct(x), rtol=1e-4, atol=1e-4)
    # it learned something: better than predicting the mean
    err = (loaded.reconstruct(x) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    assert err < 0.9


def _crash(store, out, cfg):
    """Train `cfg` into `out` until a crash after 8 of 12 batches; the last checkpoint is after 5."""
    def stop_after(n, stream):
        for i, batch in enumerate(stream):
            if i == n:
                raise RuntimeError("simulated crash")
            yield batch

    with pytest.raises(RuntimeError):
        train_saes([cfg], TCFG, stop_after(8, store_rows(store, [SITE], 256)), out, progress=False)
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 5  # checkpoints every 5 batches


def _crash_then_resume(store, out, cfg):
    _crash(store, out, cfg)
    with pytest.raises(GreyglassError, match="pass --resume"):
        train_saes([cfg], TCFG, store_rows(store, [SITE], 256), out, progress=False)
    return train_saes([cfg], TCFG, store_rows(store, [SITE], 256), out, resume=True, progress=False)


def _assert_same_weights(a_folder, b_folder):
    a, b = _weights(a_folder), _weights(b_folder)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize("cfg", [_cfg("topk"), _cfg("jumprelu", target_l0=8.0),
                                 _cfg("batchtopk", freq_cost=FreqCostConfig(form="neglog")), _cfg("matryoshka")],
                         ids=["topk", "jumprelu", "batchtopk+freq", "matryoshka"])
def test_resume_reaches_the_same_weights_bitwise(store, tmp_path, cfg):
    full = train_saes([cfg], TCFG, store_rows(store, [SITE], 256), tmp_path / "full", progress=False)
    resumed = _crash_then_resume(store, tmp_path / "cut", cfg)
    _assert_same_weights(full.folders[0], resumed.folders[0])
    # resuming a finished run trains nothing and returns its SAEs
    again = train_saes([cfg], TCFG, iter(()), tmp_path / "cut", resume=True, progress=False)
    assert again.folders == resumed.folders and torch.equal(again.saes[0].W_enc, load_sae(resumed.folders[0]).W_enc)


def test_resume_is_exact_with_any_optimiser(store, tmp_path, monkeypatch):
    """The checkpoint keeps the optimiser's own state_dict(): SGD's momentum buffers resume as Adam's moments do."""
    from greyglass.sae import train

    def sgd(sae, tcfg):
        return torch.optim.SGD(train._param_groups(sae), lr=tcfg.lr, momentum=0.9)

    monkeypatch.setattr(train, "_optimizer", sgd)
    full = train_saes([_cfg()], TCFG, store_rows(store, [SITE], 256), tmp_path / "full", progress=False)
    _assert_same_weights(full.folders[0], _crash_then_resume(store, tmp_path / "cut", _cfg()).folders[0])


def test_a_checkpoint_of_another_row_order_is_a_clear_error(store, tmp_path):
    # resuming skips the batches seen, which continues the run only on the stream it was reading
    _crash(store, tmp_path / "cut", _cfg())
    state_file = tmp_path / "cut" / "checkpoint" / "state.json"
    state = json.loads(state_file.read_text())
    del state["stream"]  # as greyglass wrote checkpoints before greyglass.activations
    state_file.write_text(json.dumps(state))
    with pytest.raises(GreyglassError, match="ordered training rows differently"):
        train_saes([_cfg()], TCFG, store_rows(store, [SITE], 256), tmp_path / "cut", resume=True, progress=False)


def test_a_checkpoint_without_optimiser_state_is_a_clear_error(store, tmp_path):
    _crash(store, tmp_path / "cut", _cfg())
    (tmp_path / "cut" / "checkpoint" / "optimizer0.pt").unlink()  # as greyglass wrote checkpoints before
    with pytest.raises(GreyglassError, match="has no optimizer0.pt: it was written by a greyglass older"):
        train_saes([_cfg()], TCFG, store_rows(store, [SITE], 256), tmp_path / "cut", resume=True, progress=False)


def test_ctrl_c_saves_a_checkpoint_after_the_current_step(store, tmp_path):
    def interrupt_at(n, stream):
        for i, batch in enumerate(stream):
            if i == n:
                os.kill(os.getpid(), signal.SIGINT)
            yield batch

    with pytest.raises(KeyboardInterrupt):
        train_saes([_cfg()], TCFG, interrupt_at(3, store_rows(store, [SITE], 256)), tmp_path / "r", progress=False)
    assert json.loads((tmp_path / "r" / "checkpoint" / "state.json").read_text())["step"] == 4


def test_several_saes_from_one_pass(store, tmp_path):
    cfgs = [_cfg("topk"), _cfg("batchtopk"), _cfg("relu", l1_coefficient=0.5),
            _cfg("jumprelu", site="blocks.1.hook_resid_post", l0_coefficient=0.01)]
    tcfg = TrainConfig(tokens=256 * 4, batch_size=256, warmup_steps=1)
    result = train_saes(cfgs, tcfg, store_rows(store, [SITE, "resid_post.1"], 256), tmp_path, progress=False)
    archs = [json.loads((f / "cfg.json").read_text())["architecture"] for f in result.folders]
    assert archs == ["topk", "jumprelu", "standard", "jumprelu"]  # BatchTopK is saved as a JumpReLU
    assert len({f.name for f in result.folders}) == 4
    batchtopk = load_sae(result.folders[1])
    assert torch.allclose(batchtopk.threshold, batchtopk.threshold[0].expand(128))  # one learned threshold


def test_at_the_default_dead_window_latents_die_and_auxk_trains_them(store, tmp_path):
    # far more latents than this low-rank data needs, two per token: most never fire. With the
    # old default (a 1M-token window, as long as a default run) none was ever counted dead.
    cfg = SAEConfig(arch=TopKConfig(k=2), d_in=64, d_sae=512, hook_name=SITE)
    assert cfg.dead_tokens is None
    tcfg = TrainConfig(tokens=256 * 20, batch_size=256, lr=1e-3, warmup_steps=2)
    result = train_saes([cfg], tcfg, store_rows(store, [SITE], 256), tmp_path, progress=False)
    assert read_training(result.folders[0])["sae"]["dead_tokens"] == 512  # a tenth of 5,120 training tokens
    final = result.metrics[0]
    assert final["dead"] > 0.1 and final["aux"] > 0


def test_the_dead_window_is_a_fraction_of_training_within_bounds():
    cfg = SAEConfig(d_in=8, d_sae=16, arch=TopKConfig(k=2))
    assert with_dead_window(cfg, TrainConfig(tokens=1_000_000, batch_size=4096)).dead_tokens == 100_000
    assert with_dead_window(cfg, TrainConfig(tokens=10**9)).dead_tokens == 10_000_000
    assert with_dead_window(cfg, TrainConfig(tokens=1000, batch_size=512)).dead_tokens == 512
    assert with_dead_window(cfg.with_updates(dead_tokens=77), TrainConfig()).dead_tokens == 77


def test_on_the_fly_batches_are_shuffled_activations_of_the_model(tiny_llama):
    def rows():
        passes = lambda epoch: model_windows(tiny_llama, ["resid_post.2"], CorpusConfig(context_size=32), 8)
        return shuffled_rows(passes, batch_size=128, buffer_rows=512)

    first = next(rows())[SITE]
    assert first.shape == (128, 64) and torch.isfinite(first).all()
    again = next(rows())[SITE]
    assert torch.equal(first, again)  # deterministic for a seed, so resume can replay it


def _saved(tmp_path, arch="topk"):
    sae = create_sae(_cfg(arch))
    sae.initialise_from(torch.randn(32, 64))
    return save_sae(sae, tmp_path / arch)


def test_load_errors_are_clear(tmp_path):
    folder = _saved(tmp_path)
    w = _weights(folder)
    with pytest.raises(GreyglassError, match="cfg.json is missing"):
        load_sae(tmp_path / "nothing")
    save_file({k: v for k, v in w.items() if k != "b_enc"}, str(folder / "sae_weights.safetensors"))
    with pytest.raises(GreyglassError, match="tensor b_enc is missing"):
        load_sae(folder)
    save_file({**w, "W_dec": w["W_dec"][:, :10].contiguous()}, str(folder / "sae_weights.safetensors"))
    with pytest.raises(GreyglassError, match=r"W_dec has shape \[128, 10\]"):
        load_sae(folder)
    save_file({**w, "b_dec": torch.full((64,), float("nan"))}, str(folder / "sae_weights.safetensors"))
    with pytest.raises(GreyglassError, match="b_dec contains NaN"):
        load_sae(folder)
    with pytest.raises(GreyglassError, match="d_model = 576"):
        load_sae(_saved(tmp_path / "b")).check_site(576, "smollm at blocks.15.hook_resid_post")


def test_loads_a_plain_saelens_folder(tmp_path):
    """A SAELens 'standard' folder without b_dec on the input and no training.json."""
    gen = torch.Generator().manual_seed(0)
    w = {"W_enc": torch.randn(64, 128, generator=gen), "W_dec": torch.randn(128, 64, generator=gen),
         "b_enc": torch.randn(128, generator=gen), "b_dec": torch.randn(64, generator=gen)}
    folder = tmp_path / "saelens"
    folder.mkdir()
    save_file(w, str(folder / "sae_weights.safetensors"))
    cfg = {"architecture": "standard", "d_in": 64, "d_sae": 128, "apply_b_dec_to_input": False,
           "normalize_activations": "none", "metadata": {"hook_name": SITE, "model_name": "gpt2"}}
    (folder / "cfg.json").write_text(json.dumps(cfg))
    sae = load_sae(folder)
    x = torch.randn(10, 64)
    expected = torch.relu(x @ w["W_enc"] + w["b_enc"])
    torch.testing.assert_close(sae.encode(x), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(sae.reconstruct(x), expected @ w["W_dec"] + w["b_dec"], rtol=1e-4, atol=1e-4)
    assert (sae.cfg.hook_name, sae.cfg.model_name, sae.cfg.architecture) == (SITE, "gpt2", "relu")


def test_saelens_cfg_for_jumprelu_has_no_k():
    cfg = saelens_cfg(SAEConfig(arch=JumpReLUConfig(), d_in=8, d_sae=16, hook_name="blocks.3.hook_resid_post"))
    assert cfg["architecture"] == "jumprelu" and "k" not in cfg and cfg["hook_layer"] == 3


def test_cli_train_and_eval_on_a_tiny_model(store, tmp_path, tiny_llama, capsys):
    model_dir = _model_dir(tiny_llama, tmp_path / "model")
    out = tmp_path / "train"
    code = main(["sae", "train", "--store", str(store.folder), "--site", "resid_post.2", "--k", "4", "--k", "8",
                 "--expansion", "2", "--tokens", "1024", "--batch-size", "256", "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert section_for(out).summary() in printed  # the terminal says what the report says
    assert "2 sparse autoencoders were trained on 1,024 activations" in printed and "not been evaluated" in printed
    results = json.loads((out / "results.json").read_text())
    assert [(s["k"], s["d_sae"]) for s in results["saes"]] == [(4, 128), (8, 128)] and results["tokens"] == 1024
    config = json.loads((out / "config.json").read_text())
    assert config["saes"][1]["arch"] == asdict(TopKConfig(k=8)) and config["config"]["ks"] == [4, 8]
    sae_dir = str(out / results["saes"][0]["folder"])
    code = main(["sae", "eval", sae_dir, "--model", str(model_dir), "--tokens", "300", "--batch-windows", "4",
                 "--out", str(tmp_path / "eval"), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert section_for(tmp_path / "eval").summary() in printed
    r = json.loads((tmp_path / "eval" / "results.json").read_text())["metrics"]
    assert r["n_tokens"] >= 300 and r["l0"] <= 4 + 1e-6
    assert r["kl_sae"]["value"] >= 0 and r["kl_zero"] >= 0 and 0 <= r["dead_fraction"] <= 1
    recovered = (r["ce_zero"] - r["ce_sae"]) / (r["ce_zero"] - r["ce_clean"])
    assert r["ce_loss_recovered"] == pytest.approx(recovered)
    assert r["explained_variance"] == pytest.approx(1 - r["fvu"]) and 0 < r["cosine"] <= 1
    assert "held-out tokens evaluated" in printed and r["heldout"]["verified"] is True
    # on the fly: no store, the model produces the activations
    code = main(["sae", "train", "--model", str(model_dir), "--site", "resid_post.1", "--context-size", "32",
                 "--expansion", "2", "--k", "4", "--tokens", "512", "--batch-size", "128", "--buffer-tokens", "512",
                 "--out", str(tmp_path / "fly"), "--no-progress"])
    assert code == 0
    assert section_for(tmp_path / "fly").summary() in capsys.readouterr().out
    fly = json.loads((tmp_path / "fly" / "sae" / "cfg.json").read_text())
    assert fly["metadata"]["hook_name"] == "blocks.1.hook_resid_post" and fly["d_sae"] == 128
    assert read_training(tmp_path / "fly" / "sae")["provenance"]["corpus"]["split"] == "train"


def test_the_train_config_asks_for_one_sae_per_site_and_k():
    cfg = TrainRunConfig(store="s", ks=(4, 8), expansion=2)
    saes = cfg.sae_configs(["a", "b"], 16, model_name="m", context_size=32, prepend_bos=False)
    assert [(c.hook_name, c.arch.k, c.d_sae, c.d_in) for c in saes] == [("a", 4, 32, 16), ("a", 8, 32, 16),
                                                                         ("b", 4, 32, 16), ("b", 8, 32, 16)]
    relu = TrainRunConfig(store="s", ks=(4, 8), d_sae=40, sae=SAEConfig(arch=ARCHITECTURES["relu"]()))
    assert [(c.hook_name, c.d_sae) for c in relu.sae_configs(["a"], 16)] == [("a", 40)]  # k means nothing to relu
    fly = TrainRunConfig(sites=("a",), train=TrainConfig(seed=3))
    assert (fly.training_corpus().split, fly.training_corpus().seed) == ("train", 3)
    with pytest.raises(GreyglassError, match="--model is for training on the fly"):
        TrainRunConfig(store="s", model=replace(fly.model, model="gpt2"))


def test_cli_flags_set_the_architectures_own_settings(store, tmp_path, capsys):
    train = ["sae", "train", "--store", str(store.folder), "--site", "resid_post.2", "--expansion", "2", "--tokens", "512",
             "--batch-size", "256", "--no-progress"]
    assert main([*train, "--arch", "jumprelu", "--target-l0", "4", "--jumprelu-bandwidth", "0.2", "--freq-cost", "neglog",
                 "--freq-cost-floor", "0.5", "--out", str(tmp_path / "jr")]) == 0
    saved = read_training(tmp_path / "jr" / "sae")["sae"]
    assert saved["arch"] == asdict(JumpReLUConfig(target_l0=4.0, bandwidth=0.2))
    assert saved["freq_cost"] == asdict(FreqCostConfig(form="neglog", floor=0.5))
    assert main([*train, "--arch", "matryoshka", "--k", "4", "--matryoshka-widths", "16", "--matryoshka-widths", "64",
                 "--out", str(tmp_path / "mat")]) == 0
    assert SAEConfig.from_dict(read_training(tmp_path / "mat" / "sae")["sae"]).arch == MatryoshkaConfig(k=4, widths=(16, 64))
    assert json.loads((tmp_path / "mat" / "sae" / "cfg.json").read_text())["architecture"] == "jumprelu"
    assert main([*train, "--arch", "matryoshka", "--matryoshka-widths", "200", "--out", str(tmp_path / "bad")]) == 2
    assert "exceed d_sae = 128" in capsys.readouterr().err
    assert main([*train, "--l1-coefficient", "1", "--out", str(tmp_path / "topk")]) == 2
    assert "--l1-coefficient does not apply to --architecture topk; it is a setting of relu" in capsys.readouterr().err


def _model_dir(lm, folder):
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return str(folder)


def test_eval_refuses_text_it_cannot_show_is_held_out(tiny_llama, tmp_path, write_lines, capsys):
    model = _model_dir(tiny_llama, tmp_path / "model")
    everything = tmp_path / "all"  # captured from split all: the held-out documents are in it
    capture(tiny_llama, CaptureConfig(sites=(SITE,), tokens=600, batch_tokens=256), CorpusConfig(context_size=32),
            everything, progress=False)
    train = ["sae", "train", "--store", str(everything), "--expansion", "2", "--k", "4", "--tokens", "512",
             "--batch-size", "256", "--out", str(tmp_path / "t"), "--no-progress"]
    assert main(train) == 0
    sae = str(tmp_path / "t" / "sae")
    evaluate = ["sae", "eval", sae, "--model", model, "--tokens", "100", "--batch-windows", "4", "--no-progress"]
    assert main([*evaluate, "--out", str(tmp_path / "e1")]) == 2
    assert "was trained on split 'all'" in capsys.readouterr().err and not (tmp_path / "e1").exists()
    assert main([*evaluate, "--out", str(tmp_path / "e2"), "--unverified-text"]) == 0
    printed = capsys.readouterr().out
    assert "NOT shown to be held out: " in printed and "on text not shown to be held out" in printed
    assert json.loads((tmp_path / "e2" / "results.json").read_text())["metrics"]["heldout"]["verified"] is False
    # another corpus cannot be shown to share no document with the training text
    other = write_lines("other.txt", ["Some other text entirely. " * 40])
    fly = ["sae", "train", "--model", model, "--site", SITE, "--context-size", "32", "--expansion", "2", "--k", "4",
           "--tokens", "256", "--batch-size", "128", "--buffer-tokens", "256", "--out", str(tmp_path / "fly"),
           "--no-progress"]
    assert main(fly) == 0
    assert main(["sae", "eval", str(tmp_path / "fly" / "sae"), "--corpus", str(other), *evaluate[3:],
                 "--out", str(tmp_path / "e3")]) == 2
    assert "cannot be shown to share no document" in capsys.readouterr().err
    # an SAE with no record of its training text (a SAELens folder)
    (tmp_path / "fly" / "sae" / "training.json").unlink()
    assert main(["sae", "eval", str(tmp_path / "fly" / "sae"), *evaluate[3:], "--out", str(tmp_path / "e4")]) == 2
    assert "does not record the text it was trained on" in capsys.readouterr().err


def test_cli_errors_are_one_line(store, tmp_path, capsys):
    assert main(["sae", "train", "--store", str(store.folder), "--site", "resid_post.3", "--out", str(tmp_path)]) == 2
    assert "has no site blocks.3.hook_resid_post" in capsys.readouterr().err
    assert main(["sae", "train", "--store", str(store.folder), "--batch-size", "4096", "--out", str(tmp_path / "b")]) == 2
    assert "holds 2000 tokens, fewer than one batch of 4096" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()  # nothing written
    assert main(["sae", "train", "--out", str(tmp_path)]) == 2
    assert "give --store" in capsys.readouterr().err
    assert main(["sae", "train", "--store", str(store.folder), "--model", "gpt2", "--out", str(tmp_path)]) == 2
    assert "--model is for training on the fly" in capsys.readouterr().err
    assert main(["sae", "eval", str(tmp_path / "none")]) == 2
    assert "cfg.json is missing" in capsys.readouterr().err


def test_the_demo_trains_an_sae_on_its_store_and_evaluates_it_on_held_out_text(tiny_llama, tmp_path, capsys):
    from greyglass.demo import demo_runs, run_demo

    steps = demo_runs(tmp_path, tiny_llama.n_layers, 4096)
    assert [r.name for r in steps[:3]] == ["capture", "sae", "sae_eval"]
    run_demo(tiny_llama, tmp_path, steps[:3])
    printed = capsys.readouterr().out
    assert section_for(tmp_path / "sae").summary() in printed and section_for(tmp_path / "sae_eval").summary() in printed
    assert "on held-out text" in printed
    weights = _weights(tmp_path / "sae" / "sae")
    run_demo(tiny_llama, tmp_path, steps[1:2])  # a rerun finds the training finished and trains nothing again
    assert "training speed" not in section_for(tmp_path / "sae").summary()
    assert all(torch.equal(weights[k], v) for k, v in _weights(tmp_path / "sae" / "sae").items())
