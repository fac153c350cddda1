"""Steering mechanics on tiny random models: vectors, application, A/B scoring, the jobs through the CLI."""

import json

import numpy as np
import pytest
import torch

from greyglass import GreyglassError
from greyglass.cli import main
from greyglass.directions import Direction
from greyglass.models.hooks import run_to_sites
from greyglass.models.text_features import text_features
from greyglass.report.build import section_for
from greyglass.steer.apply import steering, typical_norm
from greyglass.steer.config import EffectConfig
from greyglass.steer.effect import matching_probability, split_items, steering_effect
from greyglass.steer.vectors import ContrastPair, ab_prompt, caa_items, contrast_vector, sae_latent_direction

PAIRS = [ContrastPair("I love this, it is wonderful", "I hate this, it is awful"),
         ContrastPair("What a great day", "What a terrible day"),
         ContrastPair("Thanks, that helps a lot", "No, that does not help at all")]


def test_mean_diff_vector_is_the_mean_of_differences(tiny_llama):
    v = contrast_vector(tiny_llama, PAIRS, layer=2, method="mean_diff")
    pos = text_features(tiny_llama, [p.positive for p in PAIRS], [2])[:, 0]
    neg = text_features(tiny_llama, [p.negative for p in PAIRS], [2])[:, 0]
    torch.testing.assert_close(v.vector, (pos - neg).mean(0), rtol=1e-4, atol=1e-5)
    assert v.site == "blocks.2.hook_resid_post" and v.kind == "mean_diff"
    p = contrast_vector(tiny_llama, PAIRS, layer=2, method="pca")
    assert ((pos - neg) @ p.vector).mean() > 0
    assert float(p.vector.norm()) == pytest.approx(float(((pos - neg) @ p.unit()).mean()), rel=1e-4)


def test_steering_adds_coef_typical_norms_along_the_unit_vector_then_goes_away(tiny_llama):
    ids = tiny_llama.tokenizer(["steer me please"], return_tensors="pt").input_ids
    site = "blocks.1.hook_resid_post"
    direction = Direction(torch.randn(64), site, "mean_diff")
    base = run_to_sites(tiny_llama, ids, [site])[site]
    with steering(tiny_llama, direction, 3.0):
        steered = run_to_sites(tiny_llama, ids, [site])[site]
    norm = typical_norm(tiny_llama, site)
    assert norm > 0 and norm != typical_norm(tiny_llama, "blocks.0.hook_resid_post")  # per site
    want = 3.0 * norm * direction.vector / direction.vector.norm()
    torch.testing.assert_close(steered - base, want.expand_as(base), rtol=1e-4, atol=1e-4)
    assert float((steered - base)[0, 0].norm()) == pytest.approx(3.0 * norm, rel=1e-4)  # coef 1: one typical norm
    torch.testing.assert_close(run_to_sites(tiny_llama, ids, [site])[site], base)


def test_a_standardised_probe_steers_along_its_model_space_direction(tiny_llama):
    site = "blocks.0.hook_resid_post"
    scale = torch.ones(64)
    scale[:32] = 4.0  # standardising shrank the first half: in model space the probe leans to the second
    probe = Direction(torch.ones(64), site, "logistic", scale=scale)
    ids = tiny_llama.tokenizer(["x"], return_tensors="pt").input_ids
    base = run_to_sites(tiny_llama, ids, [site])[site]
    with steering(tiny_llama, probe, 1.0):
        moved = run_to_sites(tiny_llama, ids, [site])[site]
    along = torch.cat([torch.full((32,), 0.25), torch.ones(32)])
    want = typical_norm(tiny_llama, site) * along / along.norm()
    torch.testing.assert_close(moved - base, want.expand_as(base), rtol=1e-4, atol=1e-4)
    with pytest.raises(GreyglassError, match="made for another model"):
        with steering(tiny_llama, Direction(torch.ones(5), site, "x"), 1.0):
            pass


def test_sae_latent_hook_makes_a_direction():
    d = sae_latent_direction(torch.arange(4.0), "blocks.3.hook_resid_post", latent=17, sae="runs/sae/x")
    assert d.kind == "sae_latent" and d.metadata["latent"] == 17 and torch.equal(d.vector, torch.arange(4.0))
    with pytest.raises(GreyglassError, match="must be 1-D"):
        sae_latent_direction(torch.zeros(2, 4), "blocks.3.hook_resid_post", latent=0)


def test_matching_probability_equals_the_two_letter_softmax(tiny_llama):
    item = caa_items("sycophancy")[0]
    p = matching_probability(tiny_llama, [item, item], batch_size=2)
    ids = tiny_llama.tokenizer(ab_prompt(tiny_llama, item["question"]) + "(", return_tensors="pt").input_ids
    with torch.inference_mode():
        logits = tiny_llama.model(ids).logits[0, -1]
    a, b = (tiny_llama.tokenizer(letter).input_ids[-1] for letter in "AB")
    p_a = torch.softmax(logits[[a, b]], 0)[0].item()
    want = p_a if item["answer_matching_behavior"] == "(A)" else 1 - p_a
    assert p == pytest.approx([want, want], abs=1e-5)


def test_caa_items_are_ab_only():
    items = caa_items("power-seeking-inclination")
    assert items and all(i["answer_matching_behavior"] in ("(A)", "(B)") for i in items)
    with pytest.raises(GreyglassError, match="behavior"):
        caa_items("niceness")


def test_steering_effect_run_folder(tiny_llama, tmp_path):
    cfg = EffectConfig(behavior="refusal", layer=1, coefs=(-1.0, 0.0, 1.0), n_build=4, n_test=4)
    results = steering_effect(tiny_llama, cfg, tmp_path / "e", progress=False)
    values = [r.p_matching.value for r in results.coefs]
    assert len(values) == 3 and all(0 <= v <= 1 for v in values)
    assert Direction.load(tmp_path / "e" / "vector").site == "blocks.1.hook_resid_post"
    assert (tmp_path / "e" / "effect.svg").exists() and (tmp_path / "e" / "config.json").exists()


@pytest.fixture(scope="module")
def chat_model_dir(tmp_path_factory):
    from greyglass.models.tiny import tiny_model

    lm = tiny_model("llama", chat=True)
    folder = tmp_path_factory.mktemp("tiny-chat")
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return folder


def test_steer_vector_steer_and_steer_effect_cli_print_their_report_sections(chat_model_dir, tmp_path, capsys,
                                                                            write_lines):
    pairs = write_lines("pairs.jsonl", [json.dumps(p._asdict()) for p in PAIRS])
    model = ["--model", str(chat_model_dir)]
    vec = tmp_path / "vec"
    assert main(["steer-vector", *model, "--pairs", str(pairs), "--layer", "1", "--out", str(vec)]) == 0
    printed = capsys.readouterr().out
    assert section_for(vec).summary() in printed and "mean_diff vector from 3 contrast pairs" in printed
    assert Direction.load(vec).site == "blocks.1.hook_resid_post"  # the run folder is the direction folder
    out = tmp_path / "steer"
    assert main(["steer", *model, "--vector", str(vec), "--coef", "50", "--prompt", "Hi", "--max-new-tokens", "6",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert section_for(out).summary() in printed and "changed the greedy reply to 1 of 1 prompt;" in printed
    gens = json.loads((out / "results.json").read_text())["generations"]
    assert gens[0]["prompt"] == "Hi" and gens[0]["baseline"] != gens[0]["steered"]
    effect = tmp_path / "effect"
    assert main(["steer-effect", *model, "--vector", str(vec), "--behavior", "refusal", "--coefs", "-1", "--coefs",
                 "1", "--n-build", "2", "--n-test", "4", "--out", str(effect), "--no-progress"]) == 0
    assert section_for(effect).summary() in capsys.readouterr().out
    results = json.loads((effect / "results.json").read_text())
    assert results["given_vector"] and [r["coef"] for r in results["coefs"]] == [-1.0, 1.0]


def test_steer_vector_needs_exactly_one_source(chat_model_dir, write_lines, capsys):
    pairs = write_lines("pairs.jsonl", [json.dumps(p._asdict()) for p in PAIRS])
    for source in ([], ["--behavior", "refusal", "--pairs", str(pairs)]):
        assert main(["steer-vector", "--model", str(chat_model_dir), "--layer", "1", *source]) == 2
        assert "needs exactly one source" in capsys.readouterr().err


def test_bad_pairs_file_is_one_line(chat_model_dir, write_lines, capsys):
    pairs = write_lines("bad.jsonl", ['{"positive": "a"}'])
    assert main(["steer-vector", "--model", str(chat_model_dir), "--pairs", str(pairs), "--layer", "1"]) == 2
    assert "line 1: expected a JSON object with 'positive' and 'negative'" in capsys.readouterr().err


@pytest.mark.parametrize("low, high, says", [
    ((0.2, 0.1, 0.3), (0.8, 0.7, 0.9), "goes from 20% at coefficient -1 to 80% at +1"),
    ((0.8, 0.7, 0.9), (0.2, 0.1, 0.3), "goes from 80% at coefficient -1 to 20% at +1"),  # steering away counts too
    ((0.4, 0.3, 0.55), (0.6, 0.5, 0.7), "did not reliably change"),
])
def test_effect_headline_claims_a_change_only_when_the_intervals_separate(tmp_path, low, high, says):
    from greyglass.job import RunInfo
    from greyglass.stats import Estimate
    from greyglass.steer.config import CoefEffect, EffectResults
    from greyglass.steer.report import effect_section

    res = EffectResults(behavior="refusal", site="blocks.1.hook_resid_post", kind="mean_diff", given_vector=False,
                        n_build=4, n_test=8, n_test_questions=8,
                        coefs=(CoefEffect(1.0, Estimate(*high)), CoefEffect(-1.0, Estimate(*low))), coef_unit="u",
                        typical_norm=1.0, vector="vector", plot="effect.svg")
    assert says in effect_section(res, EffectConfig(), RunInfo(tmp_path, {})).headline


def test_effect_config_rejects_too_many_items():
    with pytest.raises(GreyglassError, match="must not exceed"):
        split_items(EffectConfig(behavior="refusal", n_build=400, n_test=400))
    assert np.isclose(len(split_items(EffectConfig(n_build=10, n_test=5))[1]), 5)


def test_effect_intervals_resample_the_caa_questions():
    from greyglass.steer.effect import question_clusters

    items = caa_items("sycophancy")
    clusters = question_clusters("sycophancy", items)
    # one claim behind several personas: far fewer clusters than items, each item in one
    assert len(clusters) == len(items) and len(set(clusters)) < 0.6 * len(items)
    survival = caa_items("survival-instinct")
    assert len(set(question_clusters("survival-instinct", survival))) == len(survival)


def test_steer_steer_effect_serve_model_and_the_browser_add_the_same_delta(tiny_llama, tmp_path):
    """One meaning of coef: the residual-stream delta is identical whichever entry point steers."""
    from greyglass.serve.model_api import ModelServer
    from greyglass.serve.live import LiveModel

    site = "blocks.1.hook_resid_post"
    g = torch.Generator().manual_seed(1)
    probe = Direction(torch.randn(64, generator=g), site, "logistic", mean=torch.randn(64, generator=g),
                      scale=torch.rand(64, generator=g) + 0.2)
    ids = tiny_llama.tokenizer(["one meaning of coef"], return_tensors="pt").input_ids
    base = run_to_sites(tiny_llama, ids, [site])[site]

    def delta() -> torch.Tensor:
        return run_to_sites(tiny_llama, ids, [site])[site] - base

    with steering(tiny_llama, probe, 2.0):  # what `steer` (compare) and `steer-effect` use
        by_steer = delta()
    with LiveModel.by_direction(tiny_llama, probe, 2.0)():
        by_browser = delta()
    server = ModelServer(tiny_llama, steer=probe, coef=2.0)
    try:
        by_server = delta()
    finally:
        server.close()
    want = (2.0 * typical_norm(tiny_llama, site) * probe.model_space() / probe.model_space().norm()).expand_as(base)
    for got in (by_steer, by_browser, by_server):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    # steer-effect's number at coef 2 is the one measured under the server's steering
    cfg = EffectConfig(behavior="refusal", coefs=(2.0,), n_build=1, n_test=8)
    _, test = split_items(cfg)
    server = ModelServer(tiny_llama, steer=probe, coef=2.0)
    try:
        served_p = matching_probability(tiny_llama, test)
    finally:
        server.close()
    probe.save(tmp_path / "probe")
    given = EffectConfig(behavior="refusal", vector=str(tmp_path / "probe"), coefs=(2.0,), n_build=1, n_test=8)
    row = steering_effect(tiny_llama, given, tmp_path / "e", progress=False).coefs[0]
    assert row.p_matching.value == pytest.approx(float(served_p.mean()), abs=1e-6)
