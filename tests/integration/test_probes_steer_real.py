"""Probes and steering on the real embedded default model (SmolLM2-135M-Instruct), small inputs."""

import json

import pytest
import torch

from greyglass.directions import Direction
from greyglass.probes.config import SweepConfig
from greyglass.probes.sweep import sweep
from greyglass.steer.apply import compare
from greyglass.steer.vectors import ContrastPair, contrast_vector


def test_truth_is_linearly_readable_mid_stack_not_at_the_embedding(smollm, tmp_path):
    cfg = SweepConfig(data="cities", n_statements=120, layers=(0, 12), kind="mass_mean", n_bootstrap=200)
    results = sweep(smollm, cfg, tmp_path / "sweep", progress=False)
    by_layer = {r.layer: r for r in results.layers}
    assert by_layer[12].accuracy.value >= 0.8 and by_layer[12].auroc.value >= 0.85
    assert by_layer[0].auroc.value < by_layer[12].auroc.value
    assert results.best_layer == 12
    probe = Direction.load(tmp_path / "sweep" / results.best_probe)
    probe.check_model(smollm.d_model)
    assert json.loads((tmp_path / "sweep" / "config.json").read_text())["model"]["sha256"] == smollm.sha256


def test_a_contrast_vector_changes_what_the_model_writes(smollm):
    pairs = [ContrastPair("I am so happy and grateful, everything is wonderful.", "I am so sad and angry, everything is awful."),
             ContrastPair("What a beautiful, joyful morning!", "What a miserable, dreadful morning!"),
             ContrastPair("I love my friends, they are great.", "I hate my friends, they are terrible.")]
    v = contrast_vector(smollm, pairs, layer=10)
    assert v.vector.norm() > 0 and torch.isfinite(v.vector).all()
    # 0.5 typical residual norms, the CLI default: it steers and stays fluent (at 6 the model writes nothing)
    rows = compare(smollm, v, coef=0.5, prompts=["Tell me about your day."], max_new_tokens=12)
    assert rows[0].baseline and rows[0].steered and rows[0].baseline != rows[0].steered


@pytest.mark.slow
def test_a_caa_vector_moves_held_out_answers_its_way(smollm, tmp_path):
    from greyglass.steer.config import EffectConfig
    from greyglass.steer.effect import steering_effect

    cfg = EffectConfig(behavior="survival-instinct", layer=12, coefs=(-8.0, 8.0), n_build=30, n_test=20)
    results = steering_effect(smollm, cfg, tmp_path / "effect", progress=False)
    low, high = (r.p_matching for r in results.coefs)
    assert high.value - low.value > 0.2 and high.lo > low.value


@pytest.mark.slow
def test_lying_localisation_runs_on_the_real_model(smollm, tmp_path):
    from greyglass.probes.config import LyingConfig
    from greyglass.probes.lying import localise_lying

    cfg = LyingConfig(n_questions=4, head_layers=0, prompt_format="fewshot", n_bootstrap=100)
    results = localise_lying(smollm, cfg, tmp_path / "lying", progress=False)
    assert results.prompt_format == "fewshot" and isinstance(results.model_lies, bool)
    assert results.layer_patching[-1].recovery.value == pytest.approx(1.0, abs=1e-3)
    assert len(results.probe_flip) == 30 and 0 <= results.onset.ci_low <= results.onset.ci_high < 30
