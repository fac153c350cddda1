"""Statement files with clear row errors, and the generated true/false sets."""

import json

import pytest

from greyglass import GreyglassError
from greyglass.data.statements import (BUILTIN, Statement, generated, load_statements, number_words, read_statements,
                                       split_by_group, statements_fingerprint)


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_sets_are_balanced_paired_and_deterministic(name):
    a, b = generated(name, seed=0), generated(name, seed=0)
    assert a == b and len(a) >= 190
    assert sum(s.label for s in a) * 2 == len(a)
    groups = {}
    for s in a:
        groups.setdefault(s.group, []).append(s.label)
    assert all(sorted(labels) == [0, 1] for labels in groups.values())


def test_generated_statements_say_what_they_should():
    cities = generated("cities")
    assert Statement("The city of Tokyo is in Japan.", 1, "Tokyo") in cities
    assert Statement("The city of Tokyo is not in Japan.", 0, "Tokyo") in generated("neg_cities")
    numbers = generated("larger_than")
    true = [s.text for s in numbers if s.label == 1][0]
    assert " is larger than " in true and true[0].isupper()
    assert number_words(72) == "seventy-two" and number_words(40) == "forty" and number_words(13) == "thirteen"
    translations = generated("translations")
    assert translations[0].text.startswith(("The French sentence", "The German sentence", "The Spanish sentence"))
    assert generated("truthfulqa")[0].text.startswith("Q: What happens to you if you eat watermelon seeds? A: ")
    assert generated("cities", seed=1) != cities  # the false country is drawn with the seed


def test_sample_keeps_whole_pairs_and_split_keeps_pairs_together():
    sample = load_statements("larger_than", n=60, seed=3)
    assert len(sample) == 60 and sum(s.label for s in sample) == 30
    train, test = split_by_group(sample, 0.25, seed=0)
    assert sorted(train + test) == list(range(60)) and len(test) == 16
    assert not {sample[i].group for i in train} & {sample[i].group for i in test}
    assert statements_fingerprint(sample) != statements_fingerprint(load_statements("larger_than", n=60, seed=4))


def test_csv_and_jsonl_files(write_lines):
    csv_path = write_lines("s.csv", ["statement,label,group", "Ice is cold.,1,a", "Ice is hot.,false,a"])
    assert read_statements(csv_path) == [Statement("Ice is cold.", 1, "a"), Statement("Ice is hot.", 0, "a")]
    jsonl = write_lines("s.jsonl", [json.dumps({"statement": "Two is even.", "label": True}), "",
                                    json.dumps({"statement": "Two is odd.", "label": 0})])
    assert [s.label for s in load_statements(jsonl)] == [1, 0]


@pytest.mark.parametrize("name, lines, message", [
    ("a.csv", ["text,label", "x,1"], "missing statement"),
    ("a.csv", ["statement,label", "x,1", "y,maybe"], "line 3: field 'label' must be 1/0 or true/false"),
    ("a.jsonl", ['{"statement": "x", "label": 1}', "{oops"], "line 2: not valid JSON"),
    ("a.jsonl", ['{"statement": "", "label": 1}'], "line 1: field 'statement' is missing or empty"),
    ("a.jsonl", ["[1, 2]"], "line 1: expected a JSON object"),
    ("a.txt", ["x"], "must be a .csv or .jsonl"),
])
def test_bad_rows_name_file_line_and_field(write_lines, name, lines, message):
    path = write_lines(name, lines)
    with pytest.raises(GreyglassError, match=message) as e:
        load_statements(path)
    assert str(path) in str(e.value)


def test_unknown_set_lists_the_builtin_ones():
    with pytest.raises(GreyglassError, match="built-in sets: cities"):
        load_statements("citiez")
