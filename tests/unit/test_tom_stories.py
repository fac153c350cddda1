"""The generated false-belief dataset: deterministic, big enough, balanced, and with no answer in its surface words."""

import json
from collections import Counter

import numpy as np
import pytest

from greyglass.errors import GreyglassError
from greyglass.stats import proportion_ci
from greyglass.tom.stories import CONDITIONS, QUESTIONS, TEMPLATES, generate_stories, load_templates


@pytest.fixture(scope="module")
def stories():
    return generate_stories(520, seed=0)


def test_generation_is_deterministic_for_a_seed_and_differs_across_seeds(stories):
    assert generate_stories(520, seed=0) == stories
    assert generate_stories(520, seed=1) != stories


def test_at_least_400_stories_from_at_least_12_templates_each_in_both_versions(stories):
    _, templates = load_templates()
    assert len(templates) >= 12 and len(stories) >= 400 and len({s.id for s in stories}) == len(stories)
    assert Counter(s.template for s in stories) == {t.id: len(stories) // len(templates) for t in templates}
    for s in stories:
        tb, fb = s.texts["true_belief"], s.texts["false_belief"]
        assert tb != fb and tb.split(s.initial)[0] == fb.split(s.initial)[0]  # one sentence differs
        assert s.answer("belief", "true_belief") == s.answer("reality", "false_belief") == s.changed
        assert s.answer("belief", "false_belief") == s.initial != s.changed
        assert set(s.candidates) == {s.initial, s.changed} and set(s.statements) == set(s.candidates)


def test_answers_are_balanced_across_candidate_positions_conditions_and_genders(stories):
    for question in QUESTIONS:
        for condition in CONDITIONS:
            first = [s.answer(question, condition) == s.candidates[0] for s in stories]
            assert sum(first) == len(stories) // 2, (question, condition)  # exactly half name the first candidate
    genders = Counter((s.gender, s.answer("belief", "false_belief") == s.candidates[0]) for s in stories)
    assert max(genders.values()) - min(genders.values()) <= len(stories) // 10


def test_a_bag_of_words_probe_cannot_read_the_belief_answer(stories):
    """Story + question words, order thrown away, predict which candidate the belief answer is no better
    than chance on held-out templates' stories: the answer is in the story's order, not its vocabulary.
    (Folds hold out whole templates: within one answer pair the labels are exactly balanced, so holding
    out single stories would leave the training folds' majority opposite to the held-out one and push a
    word-memorising probe below chance, a split artifact rather than evidence either way.)"""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_predict

    texts, labels, groups = [], [], []
    for s in stories:
        for condition in CONDITIONS:
            texts.append(f"{s.texts[condition]} {s.belief_question} Is it {s.candidates[0]} or {s.candidates[1]}?")
            labels.append(int(s.answer("belief", condition) == s.candidates[0]))
            groups.append(s.template)
    x, y = CountVectorizer().fit_transform(texts), np.array(labels)
    predicted = cross_val_predict(LogisticRegression(max_iter=2000), x, y, groups=groups, cv=GroupKFold(5))
    accuracy = proportion_ci(predicted == y, groups)
    assert accuracy.lo < 0.5 < accuracy.hi and 0.4 < accuracy.value < 0.6, accuracy
    # the same probe does read a surface feature the words carry (the condition): the test can fail
    conditions = np.array([c == "false_belief" for _ in stories for c in CONDITIONS])
    assert (cross_val_predict(LogisticRegression(max_iter=2000), x, conditions, groups=groups, cv=GroupKFold(5))
            == conditions).mean() > 0.8


def _broken(tmp_path, change):
    data = json.loads(TEMPLATES.read_text())
    change(data)
    path = tmp_path / "templates.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["templates"][2].pop("event"), r"template 2 \('garden_ball'\), field 'event': missing"),
    (lambda d: d["templates"][0].update(perceived="{agent} sees it go to {y}."),
     r"template 0 \('kitchen_jar'\), field 'perceived': placeholder\(s\) y not allowed"),
    (lambda d: d["templates"][1].update(initial="{agent} leaves it."), r"field 'initial': must contain \{x\}"),
    (lambda d: d["templates"][3].update(pairs=[["tea", "tea"]]), r"field 'pairs\[0\]': must be two different"),
    (lambda d: d["templates"][4].update(id="kitchen_jar"), r"field 'id': template ids must be unique"),
    (lambda d: d.pop("agents"), "field 'agents' must map"),
])
def test_bad_template_data_is_a_clear_error_naming_file_and_field(tmp_path, change, message):
    path = _broken(tmp_path, change)
    with pytest.raises(GreyglassError, match=message) as e:
        load_templates(path)
    assert str(path) in str(e.value)


def test_too_few_stories_is_a_clear_error():
    with pytest.raises(GreyglassError, match="n_stories must be at least 26"):
        generate_stories(10)
