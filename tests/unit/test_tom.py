"""`greyglass tom` mechanics on a tiny random model: the run folder, the terminal = the report, probe
labels, the behaviour verdict, per-head features and steering's random control."""

import json

import pytest
import torch

from greyglass.cli import main
from greyglass.directions import Direction
from greyglass.stats import Estimate
from greyglass.tom.answers import question_item, verdict
from greyglass.tom.config import AnswerAccuracy
from greyglass.tom.intervene import random_direction
from greyglass.tom.represent import head_features, probe_texts, split_rows
from greyglass.tom.stories import generate_stories


def test_tom_cli_writes_a_run_folder_and_prints_its_section(tiny_llama, tmp_path, capsys):
    folder = tmp_path / "model"
    tiny_llama.model.save_pretrained(folder)
    tiny_llama.tokenizer.save_pretrained(folder)
    out = tmp_path / "tom"
    code = main(["tom", "--model", str(folder), "--n-stories", "26", "--kind", "mass_mean", "--head-layers", "1",
                 "--n-bootstrap", "50", "--batch-size", "8", "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    from greyglass.report.build import section_for

    assert section_for(out).summary() in printed  # the terminal says what the report says
    results = json.loads((out / "results.json").read_text())
    assert {(a["question"], a["condition"]) for a in results["behaviour"]} == {
        (q, c) for q in ("belief", "reality") for c in ("true_belief", "false_belief")}
    assert [r["layer"] for r in results["layers"]] == list(range(tiny_llama.n_layers))
    assert results["n_train"] + results["n_validation"] + results["n_test"] == 26
    assert len(results["heads"]) == tiny_llama.model.config.num_attention_heads
    assert {(r["direction"], r["coef"]) for r in results["steering"]} == {
        (d, c) for d in ("belief", "random") for c in (-0.5, 0.5)}
    assert len((out / "stories.jsonl").read_text().splitlines()) == 26
    assert Direction.load(out / "belief_probe").site == results["steer_site"]
    for plot in ("probe_plot", "behaviour_plot", "steer_plot", "head_plot"):
        assert (out / results[plot]).read_text().startswith("<svg")
    assert json.loads((out / "config.json").read_text())["kind"] == "tom"
    from starlette.testclient import TestClient

    from greyglass.serve.app import create_app

    page = TestClient(create_app(tmp_path, load=lambda spec: tiny_llama)).get("/run/tom")  # the browser view
    assert page.status_code == 200 and "Does the model keep track of what someone else believes?" in page.text
    assert "<svg" in page.text and "what the model tracks" in page.text


def test_bad_tom_config_is_one_line_exit_2(capsys):
    assert main(["tom", "--model", "tiny", "--test-fraction", "0.7"]) == 2
    assert "test_fraction must be between 0 and 0.5" in capsys.readouterr().err


def test_probe_labels_are_balanced_and_belief_is_uncorrelated_with_reality():
    data = probe_texts(generate_stories(52))
    b, r = data.belief.float(), data.reality.float()
    assert b.mean() == r.mean() == 0.5 and ((b - 0.5) * (r - 0.5)).mean() == 0  # independent by construction
    split = split_rows(data, 0.25, 0)
    sides = [{data.story[i] for i in rows} for rows in split]
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])  # disjoint stories


def test_questions_are_asked_in_both_candidate_orders_with_the_right_answer():
    story = generate_stories(26)[0]
    a, b = (question_item(story, "belief", "false_belief", order) for order in ("original", "swapped"))
    assert a.answer_matching_behavior == b.answer_matching_behavior == story.initial
    assert a.prompt.endswith(f"Is it {story.candidates[0]} or {story.candidates[1]}?")
    assert b.prompt.endswith(f"Is it {story.candidates[1]} or {story.candidates[0]}?")
    assert b.metadata["unswapped_id"] == a.id.rsplit("/", 1)[0] and a.metadata["cluster"] == story.id


def _acc(question, condition, lo, hi):
    return AnswerAccuracy(question, condition, Estimate((lo + hi) / 2, lo, hi), Estimate(0.5, 0.4, 0.6), 40)


@pytest.mark.parametrize(("fb", "tb", "expected"), [
    ((0.6, 0.8), (0.7, 0.9), "tracks_belief"),
    ((0.05, 0.2), (0.8, 0.95), "reality_only"),  # reality in both conditions: not tracking belief
    ((0.4, 0.6), (0.8, 0.95), "unclear"),
])
def test_verdict_names_a_model_that_gives_reality_in_both_conditions(fb, tb, expected):
    accs = [_acc("belief", "false_belief", *fb), _acc("belief", "true_belief", *tb),
            _acc("reality", "false_belief", 0.8, 0.9), _acc("reality", "true_belief", 0.8, 0.9)]
    assert verdict(accs) == expected


def test_head_features_are_the_output_projection_input_at_the_last_token(tiny_llama):
    texts = ["Anna puts the key in the box.", "A short one."]
    x = head_features(tiny_llama, texts, [0, 1], batch_size=2)  # [n, L, H, hd]
    cfg = tiny_llama.model.config
    assert x.shape == (2, 2, cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads)
    seen = []
    proj = tiny_llama.blocks[1].self_attn.o_proj
    handle = proj.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        with torch.inference_mode():
            tiny_llama.model(input_ids=tiny_llama.tokenizer(texts[1], return_tensors="pt").input_ids)
    finally:
        handle.remove()
    assert torch.allclose(x[1, 1].flatten(), seen[0][0, -1].float(), atol=1e-5)  # padding did not change it


def test_the_random_direction_is_seeded_and_at_the_probe_site():
    probe = Direction(torch.ones(16), "blocks.1.hook_resid_post", "mass_mean")
    a, b = random_direction(probe, 0), random_direction(probe, 0)
    assert a.site == probe.site and torch.equal(a.vector, b.vector) and not torch.equal(a.vector, probe.vector)


def test_probes_read_a_planted_belief_signal_and_the_controls_stay_at_chance():
    from greyglass.tom.config import LayerProbes
    from greyglass.tom.represent import Prober, depth

    data = probe_texts(generate_stories(104))
    prober = Prober(data, split_rows(data, 0.25, 0), "mass_mean", 200, 0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(len(data.texts), 8, generator=g)
    x[:, 0] += 3 * (data.belief.float() - 0.5)  # belief is planted along one axis; reality is not
    belief = prober.test(prober.fit(x, data.belief, "s"), x, data.belief)
    reality = prober.test(prober.fit(x, data.reality, "s"), x, data.reality)
    shuffled = prober.test(prober.fit(x, prober.shuffled(data.belief), "s"), x, data.belief)
    assert belief.value > 0.85 and belief.lo > 0.6 and reality.lo < 0.5 < reality.hi
    # shuffled labels learn no belief: their direction is random, so it lands on either side of 50%, nearer it
    assert abs(shuffled.value - 0.5) < belief.value - 0.5
    rows = [LayerProbes(k, "s", est, reality, shuffled, reality, 0.5) for k, est in enumerate((reality, belief, belief))]
    assert depth(rows, "belief", 4).layer == 1 and depth(rows, "belief", 4).fraction == 0.25
    assert depth(rows, "reality", 4).layer is None


def test_every_side_of_the_split_keeps_each_template_balanced():
    data = probe_texts(generate_stories(104))
    split = split_rows(data, 0.25, 0)
    sides = [{data.story[i] for i in rows} for rows in split]
    assert sum(map(len, sides)) == 104 and not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert 20 <= len(sides[2]) <= 32 and 8 <= len(sides[1]) <= 24  # near a quarter, and a fifth of the rest
    for rows in split:
        for cell in _cells(data, rows, lambda i: data.template[i]):
            for label in (data.belief, data.reality, data.gender):
                assert label[cell].float().mean() == 0.5  # no side inherits another's majority
        for cell in _cells(data, rows, lambda i: (data.template[i], data.candidates[i])):
            assert data.changed_first[cell].float().mean() == 0.5  # each candidate word: as often changed as not


def _cells(data, rows, key):
    keys = {key(i) for i in rows}
    return [[i for i in rows if key(i) == k] for k in keys]


def _template_only(n_templates: int = 60, seed: int = 0):
    """Eight stories per template (two candidate pairs, each told in both directions), gender
    balanced within each template, and features that say which template a row comes from and nothing else."""
    from greyglass.tom.represent import ProbeTexts

    rows = [(t, k, condition, first) for t in range(n_templates) for k in range(8) for condition in (0, 1)
            for first in (1, 0)]  # (template, story, false belief?, statement names the first candidate?)
    changed_first = [k % 2 for _, k, _, _ in rows]
    reality = [int(f == c) for (_, _, _, f), c in zip(rows, changed_first)]
    data = ProbeTexts(
        texts=[str(r) for r in rows],
        belief=torch.tensor([r if fb == 0 else 1 - r for (_, _, fb, _), r in zip(rows, reality)]),
        reality=torch.tensor(reality), gender=torch.tensor([int(k in (0, 1, 4, 6)) for _, k, _, _ in rows]),
        story=[f"t{t}/{k}" for t, k, _, _ in rows], template=[f"t{t}" for t, _, _, _ in rows],
        candidates=[(f"a{k // 4}", f"b{k // 4}") for _, k, _, _ in rows], changed_first=torch.tensor(changed_first))
    x = torch.nn.functional.one_hot(torch.tensor([t for t, _, _, _ in rows]), n_templates).float()  # [n, T]
    return data, x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))


def test_a_probe_that_only_recognises_the_template_scores_at_chance_not_below():
    from greyglass.data.statements import Statement, split_by_group
    from greyglass.tom.represent import Prober, Split

    data, x = _template_only()
    keyed = [Statement(t, 0, s) for t, s in zip(data.texts, data.story)]
    train, test = split_by_group(keyed, 0.25, 0)  # the old split: stories at random
    fit, validation = split_by_group([keyed[i] for i in train], 0.2, 1)
    old = Split([train[i] for i in fit], [train[i] for i in validation], test)
    for split, below in ((old, True), (split_rows(data, 0.25, 0), False)):
        prober = Prober(data, split, "mass_mean", 200, 0)
        gender = prober.test(prober.fit(x, data.gender, "s"), x, data.gender)
        assert (gender.hi < 0.5) == below and (gender.lo < 0.5 < gender.hi) != below, gender
