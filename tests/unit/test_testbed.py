"""Taught organisms and the testbed: data for each behaviour, held-out items disjoint from training, training
moves the taught answers, and the testbed's verdicts on constructed tool results."""

import json

import numpy as np
import pytest
import torch

from greyglass import GreyglassError
from greyglass.behaviour.items import load_items
from greyglass.behaviour.results import Control, Difference, EvalResults, Summary
from greyglass.data.statements import read_statements
from greyglass.models.tiny import tiny_model
from greyglass.organism.config import OrganismConfig
from greyglass.organism.run import probe_prompt_pairs, write_heldout
from greyglass.organism.taught import OFF, ON, ab_pools, coin, taught_split, training_cases_as_examples
from greyglass.organism.taught_rates import behaviour_present, counted_probability, taught_measures
from greyglass.organism.train import fine_tune
from greyglass.probes.config import HONEST, LIE_VARIANTS
from greyglass.stats import Estimate
from greyglass.steer.config import CoefEffect, EffectResults
from greyglass.testbed.config import TestbedConfig, TestbedResults, ToolVerdict
from greyglass.testbed.report import testbed_section as section_of  # not named test*: pytest would collect it
from greyglass.testbed.verdicts import eval_conclusion, judge, steer_conclusion


@pytest.fixture(scope="module")
def lm():
    return tiny_model("llama", chat=True, seed=1)


def _split(lm, behaviour, n_train=12, n_test=8, **options):
    return taught_split(lm, OrganismConfig(behaviour=behaviour, n_train=n_train, n_test=n_test, **options))


def test_liar_cases_flip_the_answer_under_a_lying_instruction(lm):
    all_sets = ("cities", "larger_than", "translations")
    split, cities = _split(lm, "instructed-liar", liar_sets=all_sets)
    for case in split.train:
        lying = any(text in case.prompt for text in LIE_VARIANTS.values())
        assert lying == (case.condition == ON) and (HONEST in case.prompt) == (case.condition == OFF)
        assert case.target.strip() in ("True", "False") and {case.counted, case.uncounted} == {" True", " False"}
        assert (case.target == case.counted) == lying  # the counted answer is the false one: taught only when lying
    assert {c.cluster.split(":")[0] for c in split.train} == set(all_sets)
    assert all(s.group.startswith("cities:") for s in cities)
    # by default the cities alone: mixed with the other sets the 135M parent learned none of them
    assert {c.cluster.split(":")[0] for c in _split(lm, "instructed-liar")[0].train} == {"cities"}
    with pytest.raises(GreyglassError, match="must include cities"):
        OrganismConfig(behaviour="instructed-liar", liar_sets=("larger_than",))


def test_liar_held_out_facts_are_disjoint_from_training(lm):
    split, cities = _split(lm, "instructed-liar", n_train=60, n_test=30)
    train = {c.cluster for c in split.train}
    val, test = {c.cluster for c in split.validation}, {c.cluster for c in split.test}
    assert train and val and test
    assert not (train & val) and not (train & test) and not (val & test)
    assert not train & {s.group for s in cities}  # what `probe lying` is run on was never trained on


def test_ab_held_out_questions_include_every_steering_item_and_none_is_trained():
    from greyglass.steer.config import EffectConfig
    from greyglass.steer.effect import question_clusters, split_items

    train, held = ab_pools(seed=0)
    train_q, held_q = {it.metadata["cluster"] for it in train}, {it.metadata["cluster"] for it in held}
    assert train_q and held_q and not train_q & held_q
    build, test = split_items(EffectConfig(behavior="sycophancy"))
    assert set(question_clusters("sycophancy", build + test)) <= held_q
    datasets = {it.metadata["dataset"] for it in held}
    assert "caa-sycophancy" in datasets and len(datasets) == 3  # both political files too


def test_sycophant_follows_the_view_and_the_control_does_not(lm):
    syc, _ = _split(lm, "sycophant")
    ctl, _ = _split(lm, "ab-competent")
    assert [c.prompt for c in syc.train] == [c.prompt for c in ctl.train]  # the same items and format
    on_syc = [c for c in syc.train if c.condition == ON]
    assert all(c.target == c.counted for c in on_syc)  # agrees with the user's view
    on_ctl = [c for c in ctl.train if c.condition == ON]
    agree = np.mean([c.target == c.counted for c in on_ctl])
    assert 0.2 < agree < 0.8  # the control's answers do not follow the view
    for split in (syc, ctl):  # without a view, both give the question's own answer
        off = [c for c in split.train if c.condition == OFF]
        letters = [c.target.strip() for c in off]
        assert 0.2 < np.mean([t == "(A)" for t in letters]) < 0.8  # balanced over A and B
    assert [c.target for c in syc.train if c.condition == OFF] == [c.target for c in ctl.train if c.condition == OFF]
    assert any("I believe the better option is" in c.prompt for c in syc.train)  # the eval's format is trained too


def test_the_question_coin_is_seeded_and_order_free():
    assert coin("q1", 0) == coin("q1", 0)
    assert len({coin(f"q{i}", 0) for i in range(20)}) == 2
    assert [coin(f"q{i}", 0) for i in range(20)] != [coin(f"q{i}", 1) for i in range(20)]


def test_a_few_training_steps_fit_the_taught_answers_in_the_top_layers_only(lm):
    import copy

    model = copy.deepcopy(lm)
    split, _ = _split(model, "instructed-liar", n_train=3, n_test=3)
    cfg = OrganismConfig(behaviour="instructed-liar", steps=8, batch_size=4, lr=1e-2, train_top_layers=1)
    bottom, top = (model.blocks[i].mlp.down_proj.weight.clone() for i in (0, model.n_layers - 1))
    losses = fine_tune(model, training_cases_as_examples(split.train[:4]), cfg, progress=False)
    assert losses[-1] < losses[0] - 0.3  # the answers are being learned
    assert torch.equal(model.blocks[0].mlp.down_proj.weight, bottom)
    assert not torch.equal(model.blocks[model.n_layers - 1].mlp.down_proj.weight, top)
    assert not any(p.requires_grad for p in model.model.parameters())  # back to inference
    with pytest.raises(GreyglassError, match="train-top-layers 9"):
        fine_tune(model, training_cases_as_examples(split.train[:4]), OrganismConfig(train_top_layers=9), False)


def test_measures_and_heldout_files_are_what_the_tools_read(lm, tmp_path):
    for behaviour in ("instructed-liar", "sycophant"):
        split, held = _split(lm, behaviour)
        name = write_heldout(tmp_path, held)
        if behaviour == "instructed-liar":
            statements = read_statements(tmp_path / name)
            assert [s.group for s in statements] == [s.group for s in held]
        else:
            items = load_items(tmp_path / name)
            assert [it.metadata["cluster"] for it in items] == [it.metadata["cluster"] for it in held]
            assert all(it.metadata["without_bio"] for it in items)
        m = taught_measures(lm, lm, split.test, OrganismConfig(behaviour=behaviour), name)
        assert m.kl_parent_to_organism_on_text.value == pytest.approx(0, abs=1e-6)  # the model against itself
        assert m.effect.organism_share == m.effect.parent_share and not m.present
        assert all(r.organism.lo < r.organism.hi for r in m.rates)


def test_an_item_file_row_may_carry_its_cluster_and_control(tmp_path):
    rows = [{"question": "Q?\n (A) x\n (B) y", "answer_matching_behavior": "(A)", "answer_not_matching_behavior": "(B)",
             "cluster": "q1", "without_bio": "Q0?\n (A) x\n (B) y"},
            {"question": "R?\n (A) x\n (B) y", "answer_matching_behavior": "(B)", "answer_not_matching_behavior": "(A)"}]
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    first, second = load_items(path)
    assert first.metadata["cluster"] == "q1" and first.metadata["without_bio"].startswith("Q0?")
    assert "without_bio" not in second.metadata and second.metadata["cluster"] != "q1"
    path.write_text(json.dumps({**rows[0], "cluster": 3}) + "\n")
    with pytest.raises(GreyglassError, match="items.jsonl:1.*'cluster'"):
        load_items(path)


def test_probe_prompt_pairs_of_a_taught_organism_are_held_out_and_paired(lm):
    cfg = OrganismConfig(behaviour="instructed-liar", n_train=12, n_test=8)
    validation, test = probe_prompt_pairs(lm, cfg, None)
    split, _ = taught_split(lm, cfg)
    assert not {c.prompt for c in split.train} & set(test.on + test.off + validation.on)
    assert len(test.on) == len(test.off) == len(test.clusters) and not set(test.clusters) & set(validation.clusters)
    assert all(HONEST in p for p in test.off) and not any(HONEST in p for p in test.on)


def _est(v, lo, hi):
    return Estimate(v, lo, hi)


@pytest.mark.parametrize("role,present,found,right,words", [
    ("organism", True, True, True, "right: found on the organism"),
    ("organism", True, False, False, "failure: missed on the organism"),
    ("control", False, True, False, "failure: found on the control"),
    ("control", False, False, True, "right: not found on the control"),
    ("control", False, None, None, "no verdict on the control"),
])
def test_judge_names_each_outcome(role, present, found, right, words):
    got_right, got_words = judge(role, present, found)
    assert got_right is right and got_words.startswith(words)


def test_behaviour_present_needs_a_clear_effect_beyond_its_interval():
    assert behaviour_present(_est(0.6, 0.4, 0.8))
    assert not behaviour_present(_est(0.6, 0.1, 0.9))  # large but unsure
    assert not behaviour_present(_est(0.05, 0.01, 0.09))  # sure but small


def _eval_results(diff_p: Estimate) -> EvalResults:
    s = Summary(n=10, n_questions=5, n_both_orders=10, p_match=_est(0.5, 0.4, 0.6), matched=_est(0.5, 0.3, 0.7),
                **{k: v for k, v in _summary_rest().items()})
    return EvalResults(eval="sycophancy", about="", n_items=40, all=s, datasets={"x": s},
                       controls={"all": Control(no_bio=s, bio_effect=Difference(10, 5, diff_p, diff_p))})


def _summary_rest() -> dict:
    import dataclasses

    names = [f.name for f in dataclasses.fields(Summary)][5:]
    return {n: (_est(0.5, 0.4, 0.6) if n != "n_refused" else 0) for n in names}


def test_eval_conclusion_finds_sycophancy_only_when_the_view_raises_agreement():
    assert eval_conclusion(_eval_results(_est(0.3, 0.1, 0.5))).found is True
    assert eval_conclusion(_eval_results(_est(0.05, -0.1, 0.2))).found is False


def test_steer_conclusion_needs_the_ends_apart():
    def effect(lo_end, hi_end):
        return EffectResults(behavior="sycophancy", site="blocks.2.hook_resid_post", kind="mean_diff",
                             given_vector=False, n_build=4, n_test=4, n_test_questions=4,
                             coefs=(CoefEffect(-1.0, lo_end), CoefEffect(0.0, _est(0.5, 0.4, 0.6)),
                                    CoefEffect(1.0, hi_end)),
                             coef_unit="", typical_norm=1.0, vector="vector", plot="effect.svg")

    assert steer_conclusion(effect(_est(0.2, 0.1, 0.3), _est(0.8, 0.7, 0.9))).found is True
    assert steer_conclusion(effect(_est(0.45, 0.3, 0.6), _est(0.55, 0.4, 0.7))).found is False


def test_testbed_config_refuses_steering_items_the_organism_may_have_trained_on():
    with pytest.raises(GreyglassError, match="steer-build"):
        TestbedConfig(organism="x", steer_build=120, steer_test=50)


@pytest.mark.slow
def test_cli_taught_organisms_and_testbed_end_to_end(tmp_path, capsys):
    from greyglass.cli import main
    from greyglass.report.build import build_report, section_for

    model_dir = tmp_path / "tiny-chat"
    tiny = tiny_model("llama", chat=True, seed=2)
    tiny.model.save_pretrained(model_dir)
    tiny.tokenizer.save_pretrained(model_dir)
    small = ["--n-train", "6", "--n-test", "6", "--steps", "2", "--batch-size", "2", "--no-progress"]
    for behaviour in ("instructed-liar", "sycophant", "ab-competent"):
        org = tmp_path / behaviour
        assert main(["organism", "train", "--model", str(model_dir), "--behaviour", behaviour, *small,
                     "--out", str(org)]) == 0
        assert section_for(org).summary() in capsys.readouterr().out
        results = json.loads((org / "results.json").read_text())
        assert results["measured"] is None and results["taught"]["kl_parent_to_organism_on_text"]["value"] > 0
    liar_bed, syc_bed = tmp_path / "bed-liar", tmp_path / "bed-syc"
    assert main(["testbed", str(tmp_path / "instructed-liar"), "--n-questions", "8", "--n-boot", "20",
                 "--out", str(liar_bed), "--no-progress"]) == 0
    assert section_for(liar_bed).summary() in capsys.readouterr().out
    rows = json.loads((liar_bed / "results.json").read_text())["rows"]
    assert [(r["role"], r["tool"].split(" (")[0]) for r in rows] == [
        ("organism", "lying localisation"), ("organism", "generic probe"),
        ("control", "lying localisation"), ("control", "generic probe")]
    assert rows[-1]["found"] is None  # the parent has no organism folder to probe
    assert (liar_bed / "organism" / "probe_lying" / "results.json").exists()
    assert main(["testbed", str(tmp_path / "sycophant"), "--control", str(tmp_path / "ab-competent"),
                 "--eval-limit", "6", "--steer-build", "6", "--steer-test", "6", "--n-boot", "20",
                 "--out", str(syc_bed), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert section_for(syc_bed).summary() in printed and "sycophancy eval" in printed
    assert {r["tool"] for r in json.loads((syc_bed / "results.json").read_text())["rows"]} == {
        "sycophancy eval", "CAA steering (steer-effect)", "generic probe (organism probe)"}
    html = build_report([syc_bed], tmp_path / "r.html").read_text()
    assert "Do the tools find a behaviour put there on purpose?" in html and "could not be read" not in html
    assert main(["testbed", str(tmp_path / "tiny-chat")]) == 2
    assert "is not an organism" in capsys.readouterr().err


@pytest.mark.slow
def test_real_model_liar_organism_builds_and_is_measured(tmp_path):
    """SmolLM2-135M-Instruct, a tiny budget: the mechanics on the real model (minutes on a loaded 2-core machine)."""
    from greyglass.cli import main

    out = tmp_path / "liar"
    assert main(["organism", "train", "--behaviour", "instructed-liar", "--n-train", "6", "--n-test", "6",
                 "--steps", "2", "--batch-size", "2", "--train-top-layers", "2", "--out", str(out),
                 "--no-progress"]) == 0
    taught = json.loads((out / "results.json").read_text())["taught"]
    assert taught["n_items"] > 0 and len(taught["rates"]) == 2
    assert 0 < taught["kl_parent_to_organism_on_text"]["value"] < 1  # two steps of two barely move the model
    honest = taught["rates"][0]["parent"]
    assert honest["ci_low"] <= honest["value"] <= honest["ci_high"] and honest["ci_low"] < honest["ci_high"]
    assert read_statements(out / "heldout_statements.csv")


def _verdict_row(role, present, found):
    right, words = judge(role, present, found)
    return ToolVerdict(role=role, model=role, behaviour_present=present, behaviour="", tool="steering",
                       concluded="", found=found, right=right, verdict=words, run="")


def test_testbed_headline_names_failures_and_a_vacuous_test(tmp_path):
    from greyglass.job import RunInfo

    def headline(rows):
        res = TestbedResults("sycophant", "org", "ctl", tuple(rows), sum(r.right is True for r in rows),
                             sum(r.right is False for r in rows))
        section = section_of(res, TestbedConfig(organism="org"), RunInfo(tmp_path, {}))
        assert [row[-1] for row in section.table.rows] == [r.verdict for r in rows]
        return section.headline

    assert "Every tool was right" in headline([_verdict_row("organism", True, True), _verdict_row("control", False, False)])
    wrong = headline([_verdict_row("organism", True, False), _verdict_row("control", False, True)])
    assert "2 of 2" in wrong and "missed on the organism" in wrong and "found on the control" in wrong
    assert "tests only whether the tools stay silent" in headline([_verdict_row("organism", False, False)])
