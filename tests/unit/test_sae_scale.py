"""Many SAEs from one forward pass (--site repeated, --layers), and the GPU path's arithmetic, on a tiny model.

A site's SAEs are the same whether it trains alone or beside other sites: same seed, same rows (the
shuffle depends on the row count, not the sites), and the forward pass computes the same activations
whether it stops after one site or after the deepest of several."""

import json

import pytest
import torch
from safetensors.torch import load_file

from greyglass import GreyglassError
from greyglass.data import CorpusConfig
from greyglass.sae.config import SAEConfig, TopKConfig, TrainConfig, TrainRunConfig, parse_layers
from greyglass.sae.train import CHECKPOINT, run_train, sae_seeds, train_saes, training_source

TRAIN = TrainConfig(tokens=128 * 10, batch_size=128, lr=1e-3, warmup_steps=2, buffer_tokens=512,
                    checkpoint_every=128 * 4)
CORPUS = CorpusConfig(context_size=32, split="train")


def _run(lm, out, **sites):
    cfg = TrainRunConfig(**sites, ks=(4,), expansion=2, train=TRAIN, corpus=CORPUS)
    return run_train(lm, cfg, out, progress=False)


def _weights(folder):
    return load_file(str(folder / "sae_weights.safetensors"))


def _same(a, b):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[n], wb[n]) for n in wa), (a, b)


def test_layers_name_one_site_each():
    assert parse_layers("0-3,10") == [0, 1, 2, 3, 10] and parse_layers("4") == [4] and parse_layers("2,1,2") == [2, 1]
    for bad in ("3-1", "a", "1-", "", "1,,2"):
        with pytest.raises(GreyglassError, match="--layers"):
            parse_layers(bad)
    cfg = TrainRunConfig(sites=("blocks.1.hook_mlp_out", "blocks.0.hook_resid_post"), layers="0-1")
    assert cfg.all_sites() == ("blocks.1.hook_mlp_out", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post")
    assert TrainRunConfig(layers="2", site_kind="attn_out").all_sites() == ("blocks.2.hook_attn_out",)
    with pytest.raises(GreyglassError, match="site_kind"):
        TrainRunConfig(layers="2", site_kind="resid")
    # each site's SAEs are seeded as if the site trained alone
    cfgs = [SAEConfig(hook_name=s).with_k(k) for s in ("a", "b") for k in (4, 8)]
    assert sae_seeds(cfgs, 7) == [7, 8, 7, 8]


def test_many_sites_from_one_forward_pass_equal_separate_runs(tiny_llama, tmp_path):
    together = _run(tiny_llama, tmp_path / "all", layers="1-3")
    assert [s.site for s in together.saes] == [f"blocks.{i}.hook_resid_post" for i in (1, 2, 3)]
    folders = [tmp_path / "all" / s.folder for s in together.saes]
    assert [f.name for f in folders] == [f"sae{i}-topk-128-k4-blocks.{i + 1}.hook_resid_post" for i in range(3)]
    for layer, folder in zip((1, 2, 3), folders):
        alone = _run(tiny_llama, tmp_path / f"l{layer}", sites=(f"resid_post.{layer}",))
        assert alone.saes[0].folder == "sae"  # a single SAE keeps its folder name
        _same(folder, tmp_path / f"l{layer}" / "sae")  # bit for bit
        site = json.loads((folder / "cfg.json").read_text())["metadata"]["hook_name"]
        assert site == f"blocks.{layer}.hook_resid_post"


def test_several_sites_resume_exactly(tiny_llama, tmp_path):
    cfg = TrainRunConfig(layers="1-2", ks=(4, 8), expansion=2, train=TRAIN, corpus=CORPUS)
    source = training_source(tiny_llama, cfg)
    saes = cfg.sae_configs(source.sites, source.d_in, **source.facts)

    def crash_after(n, stream):
        for i, batch in enumerate(stream):
            if i == n:
                raise RuntimeError("simulated crash")
            yield batch

    with pytest.raises(RuntimeError, match="simulated"):
        train_saes(saes, TRAIN, crash_after(6, source.batches), tmp_path / "cut", progress=False)
    assert json.loads((tmp_path / "cut" / CHECKPOINT / "state.json").read_text())["step"] == 4
    resumed = train_saes(saes, TRAIN, training_source(tiny_llama, cfg).batches, tmp_path / "cut", resume=True,
                         progress=False)
    full = train_saes(saes, TRAIN, training_source(tiny_llama, cfg).batches, tmp_path / "full", progress=False)
    assert len(full.folders) == 4
    for a, b in zip(full.folders, resumed.folders):
        _same(a, b)


def test_an_sae_step_on_bfloat16_activations_is_the_float32_step_on_their_values(tmp_path):
    """On a GPU the model runs in bf16 and the SAE in float32: the SAE upcasts each batch first, so training on
    bf16 activations is training in float32 on the bf16-rounded values (no bf16 arithmetic in the SAE step)."""
    gen = torch.Generator().manual_seed(0)
    rows = [torch.randn(64, 16, generator=gen).to(torch.bfloat16) for _ in range(6)]
    cfg = SAEConfig(arch=TopKConfig(k=4, k_aux=8), d_in=16, d_sae=32, dead_tokens=64, hook_name="s")
    tcfg = TrainConfig(tokens=64 * 6, batch_size=64, warmup_steps=1)
    low = train_saes([cfg], tcfg, iter({"s": r} for r in rows), tmp_path / "bf16", progress=False)
    full = train_saes([cfg], tcfg, iter({"s": r.float()} for r in rows), tmp_path / "f32", progress=False)
    for name, p in low.saes[0].named_parameters():
        assert p.dtype == torch.float32 and torch.equal(p, dict(full.saes[0].named_parameters())[name]), name



def test_each_rank_runs_its_own_forward_passes(tiny_llama):
    """On the fly, rank r of n takes forward passes r, r + n, ...: the ranks' windows are the passes of one process."""
    from itertools import islice

    from greyglass.activations import model_windows

    def passes(part, n):
        return list(islice(model_windows(tiny_llama, ["blocks.1.hook_resid_post"], CORPUS, 2, part=part), n))

    one, ranks = passes((0, 1), 4), [passes((r, 2), 2) for r in range(2)]
    for i, w in enumerate(one):
        mine = ranks[i % 2][i // 2]
        site = "blocks.1.hook_resid_post"
        assert torch.equal(w.tokens, mine.tokens) and torch.equal(w.acts[site], mine.acts[site])


def test_settings_that_do_not_fit_the_ranks_are_clear_errors(tiny_llama, tmp_path):
    from greyglass.sae.distributed import Ranks

    odd = TrainRunConfig(layers="1", train=TrainConfig(batch_size=129), corpus=CORPUS)
    with pytest.raises(GreyglassError, match="does not split evenly over 2 ranks"):
        training_source(tiny_llama, odd, Ranks(0, 2))
    # a checkpoint of a one-process run does not continue on two ranks (each rank's stream depends on their number)
    cfg = TrainRunConfig(layers="1", ks=(4,), expansion=2, train=TRAIN, corpus=CORPUS)
    source = training_source(tiny_llama, cfg)
    saes = cfg.sae_configs(source.sites, source.d_in, **source.facts)
    with pytest.raises(KeyboardInterrupt):
        train_saes(saes, TRAIN, _interrupted_after(5, source.batches), tmp_path, progress=False)
    with pytest.raises(GreyglassError, match="world size 1; resume it with as many ranks"):
        train_saes(saes, TRAIN, iter(()), tmp_path, resume=True, progress=False, ranks=Ranks(0, 2))


def _interrupted_after(n, stream):
    import os
    import signal

    for i, batch in enumerate(stream):
        if i == n:
            os.kill(os.getpid(), signal.SIGINT)
        yield batch
