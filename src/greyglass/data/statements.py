"""Labelled true/false statements: a file format, and generated sets with clear provenance.

A statement is a sentence, a label (1 true, 0 false) and an optional group. Statements in one
group are a matched pair (the same fact stated truly and falsely), which the PCA-of-
differences probe needs and which keeps both halves of a pair on the same side of a
train/test split. Files are CSV (a header with `statement,label[,group]`) or JSONL (one
object per line with those fields); a bad row is an error naming the file, line and field.

Built-in sets (after Marks & Tegmark, "The Geometry of Truth"), each balanced (one true and
one false statement per group), deterministic for a seed, and each with a negated version
(`neg_<name>`: "is not", labels flipped):

- `cities`: "The city of Tokyo is in Japan." Cities and countries from a list written for
  greyglass (`CITIES` below, public geographic facts); the false country is drawn from the
  other cities' countries.
- `larger_than`: "Seventy-two is larger than fifty-one." Numbers 1-99 written in words.
- `translations`: 'The French sentence "..." means "..." in English.' Short sentences of
  NTREX-128 (CC BY-SA 4.0, Federmann et al. 2022), French, German and Spanish; the false
  statement pairs the foreign sentence with another line's English.
- `truthfulqa`: "Q: <question> A: <answer>", the best answer (true) against the first
  incorrect answer (false); TruthfulQA, Apache-2.0, Lin, Hilton & Evans 2022. No negated version.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import GreyglassError
from ..fingerprint import json_sha256
from .files import bundled_path, jsonl_objects, open_text, text_lines


@dataclass(frozen=True)
class Statement:
    """One labelled sentence; `group` ties together the true and false version of one fact."""

    text: str
    label: int
    group: str = ""


# City:country pairs (public geographic facts), written for greyglass.
CITIES = """Tokyo:Japan; Osaka:Japan; Kyoto:Japan; Paris:France; Lyon:France; Marseille:France; Berlin:Germany;
Munich:Germany; Hamburg:Germany; London:the United Kingdom; Manchester:the United Kingdom;
Edinburgh:the United Kingdom; Madrid:Spain; Barcelona:Spain; Seville:Spain; Rome:Italy;
Milan:Italy; Naples:Italy; Lisbon:Portugal; Porto:Portugal; Amsterdam:the Netherlands;
Rotterdam:the Netherlands; Brussels:Belgium; Antwerp:Belgium; Vienna:Austria; Zurich:Switzerland;
Geneva:Switzerland; Stockholm:Sweden; Oslo:Norway; Copenhagen:Denmark; Helsinki:Finland;
Warsaw:Poland; Krakow:Poland; Prague:the Czech Republic; Budapest:Hungary; Athens:Greece;
Istanbul:Turkey; Ankara:Turkey; Moscow:Russia; Saint Petersburg:Russia; Kyiv:Ukraine;
Dublin:Ireland; Cairo:Egypt; Alexandria:Egypt; Lagos:Nigeria; Nairobi:Kenya;
Johannesburg:South Africa; Cape Town:South Africa; Casablanca:Morocco; Addis Ababa:Ethiopia;
Accra:Ghana; Beijing:China; Shanghai:China; Guangzhou:China; Hong Kong:China; Seoul:South Korea;
Busan:South Korea; Mumbai:India; Delhi:India; Bangalore:India; Kolkata:India; Karachi:Pakistan;
Lahore:Pakistan; Dhaka:Bangladesh; Bangkok:Thailand; Hanoi:Vietnam; Jakarta:Indonesia;
Manila:the Philippines; Singapore:Singapore; Kuala Lumpur:Malaysia; Tehran:Iran; Baghdad:Iraq;
Riyadh:Saudi Arabia; Dubai:the United Arab Emirates; Jerusalem:Israel; Sydney:Australia;
Melbourne:Australia; Auckland:New Zealand; New York:the United States;
Los Angeles:the United States; Chicago:the United States; Houston:the United States; Toronto:Canada;
Montreal:Canada; Vancouver:Canada; Mexico City:Mexico; Guadalajara:Mexico; Havana:Cuba;
Bogota:Colombia; Lima:Peru; Santiago:Chile; Buenos Aires:Argentina;
Sao Paulo:Brazil; Rio de Janeiro:Brazil;
Caracas:Venezuela; Quito:Ecuador; Montevideo:Uruguay"""

_NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                 "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_LANGUAGES = {"fra": "French", "deu": "German", "spa": "Spanish"}


def number_words(n: int) -> str:
    """0..99 in English words: 72 -> 'seventy-two'."""
    if n < 20:
        return _NUMBER_WORDS[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + (f"-{_NUMBER_WORDS[ones]}" if ones else "")


# A generated set yields (group, (subject, object) of the true statement, (subject, object) of the false one).
Pair = tuple[str, tuple[str, str], tuple[str, str]]


def _city_pairs(rng: random.Random) -> list[Pair]:
    cities = [item.strip().split(":") for item in CITIES.replace("\n", " ").split(";")]
    countries = sorted({country for _, country in cities})
    return [(city, (city, country), (city, rng.choice([c for c in countries if c != country])))
            for city, country in cities]


def _number_pairs(rng: random.Random, n: int = 400) -> list[Pair]:
    ordered = [(a, b) for a in range(2, 100) for b in range(1, a)]
    return [(f"{a}>{b}", (number_words(a), number_words(b)), (number_words(b), number_words(a)))
            for a, b in rng.sample(ordered, n)]


def _translation_pairs(rng: random.Random, per_language: int = 150) -> list[Pair]:
    with open_text(bundled_path("ntrex-128/newstest2019-src.eng.txt")) as f:
        english = [line.strip() for line in f]
    short = [i for i, s in enumerate(english) if 4 <= len(s.split()) <= 10 and '"' not in s]
    pairs: list[Pair] = []
    for code, language in _LANGUAGES.items():
        with open_text(bundled_path(f"ntrex-128/newstest2019-ref.{code}.txt")) as f:
            foreign = [line.strip() for line in f]
        for i in rng.sample(short, per_language):
            j = rng.choice([k for k in short if k != i])
            sentence = f'{language} sentence "{foreign[i]}"'
            pairs.append((f"{code}:{i}", (sentence, english[i]), (sentence, english[j])))
    return pairs


# name -> (make the pairs, template, negated template); {s} subject, {o} object.
GENERATED: dict[str, tuple[Callable[[random.Random], list[Pair]], str, str]] = {
    "cities": (_city_pairs, "The city of {s} is in {o}.", "The city of {s} is not in {o}."),
    "larger_than": (_number_pairs, "{s} is larger than {o}.", "{s} is not larger than {o}."),
    "translations": (_translation_pairs, 'The {s} means "{o}" in English.', 'The {s} does not mean "{o}" in English.'),
}
BUILTIN: tuple[str, ...] = (*GENERATED, *(f"neg_{n}" for n in GENERATED), "truthfulqa")


def generated(name: str, seed: int = 0) -> list[Statement]:
    """A built-in set by name (see the module docstring), one true and one false statement per group."""
    if name == "truthfulqa":
        return truthfulqa()
    if name.removeprefix("neg_") not in GENERATED:
        return read_statements(name)  # explains what is known
    negated = name.startswith("neg_")
    make, template, negated_template = GENERATED[name.removeprefix("neg_")]
    out = []
    for group, true_so, false_so in make(random.Random(seed)):
        for (s, o), label in ((true_so, 1), (false_so, 0)):
            text = (negated_template if negated else template).format(s=s, o=o)
            out.append(Statement(text[0].upper() + text[1:], 1 - label if negated else label, group))
    return out


def truthfulqa() -> list[Statement]:
    """TruthfulQA as 'Q: ... A: ...': the best answer (true) and the first incorrect answer (false)."""
    with open_text(bundled_path("truthfulqa/TruthfulQA.csv")) as f:
        rows = list(csv.DictReader(f))
    out = []
    for i, row in enumerate(rows):
        wrong = row["Incorrect Answers"].split(";")[0].strip()
        for answer, label in ((row["Best Answer"].strip(), 1), (wrong, 0)):
            out.append(Statement(f"Q: {row['Question'].strip()} A: {answer}", label, f"tqa:{i}"))
    return out


def read_statements(path: str | Path) -> list[Statement]:
    """Statements from a CSV (header `statement,label[,group]`) or JSONL file."""
    path = Path(path)
    name = path.name.removesuffix(".gz")
    if name.endswith(".csv"):
        reader = csv.DictReader(line for _, line in text_lines(path, newline=""))  # csv reads quoted newlines itself
        try:
            missing = {"statement", "label"} - set(reader.fieldnames or ())
            if missing:
                raise GreyglassError(f"{path}: the CSV header needs columns statement,label[,group]; "
                                     f"missing {', '.join(sorted(missing))}")
            rows = [(reader.line_num, row) for row in reader]
        except csv.Error as e:
            raise GreyglassError(f"{path} line {reader.line_num}: not valid CSV ({e})") from None
    elif name.endswith(".jsonl"):
        rows = list(jsonl_objects(path, "a JSON object with statement and label"))
    elif not path.exists():
        raise GreyglassError(f"unknown statement set {str(path)!r}; built-in sets: {', '.join(BUILTIN)}, "
                             "or give a .csv/.jsonl file with statement,label[,group]")
    else:
        raise GreyglassError(f"{path}: statements must be a .csv or .jsonl file (optionally .gz)")
    statements = [_statement(path, n, row) for n, row in rows]
    if not statements:
        raise GreyglassError(f"{path}: no statements in the file")
    return statements


def _statement(path: Path, line: int, row: dict) -> Statement:
    text = row.get("statement")
    if not isinstance(text, str) or not text.strip():
        raise GreyglassError(f"{path} line {line}: field 'statement' is missing or empty")
    label = str(row.get("label", "")).strip().lower()
    if label not in ("0", "1", "true", "false"):
        raise GreyglassError(f"{path} line {line}: field 'label' must be 1/0 or true/false, got {row.get('label')!r}")
    group = row.get("group")
    return Statement(text.strip(), int(label in ("1", "true")), "" if group is None else str(group))


def set_name(spec: str | Path) -> str:
    """A statement set's short name for tables and plots: a built-in name, or a file's stem
    (`data/facts.csv.gz` -> `facts`)."""
    if str(spec) in BUILTIN:
        return str(spec)
    name = Path(spec).name.removesuffix(".gz")
    return name.removesuffix(".csv").removesuffix(".jsonl")


def load_statements(spec: str | Path, n: int | None = None, seed: int = 0) -> list[Statement]:
    """A built-in set name or a file; with `n`, a seeded sample of whole groups up to `n` statements."""
    statements = generated(str(spec), seed) if str(spec) in BUILTIN else read_statements(spec)
    if n is None or n >= len(statements):
        return statements
    by_group = _groups(statements)
    keys = sorted(by_group)
    random.Random(seed).shuffle(keys)
    out: list[Statement] = []
    for key in keys:
        if len(out) >= n:
            break
        out += [statements[i] for i in by_group[key]]
    return out


def group_keys(statements: Sequence[Statement]) -> list[str]:
    """Each statement's group, for splits and cluster bootstraps; an ungrouped statement (a file with
    only statement,label, as public true/false sets are) is its own group, keyed by its position
    (the NUL byte keeps that key apart from any group a file can name)."""
    return [s.group or f"\0{i}" for i, s in enumerate(statements)]


def _groups(statements: Sequence[Statement]) -> dict[str, list[int]]:
    """Indices by group; an ungrouped statement is its own group."""
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(group_keys(statements)):
        groups.setdefault(key, []).append(i)
    return groups


def split_by_group(statements: Sequence[Statement], test_fraction: float = 0.25,
                   seed: int = 0) -> tuple[list[int], list[int]]:
    """(train, test) indices; both statements of a pair land on the same side."""
    groups = list(_groups(statements).values())
    random.Random(seed).shuffle(groups)
    n_test = max(1, round(len(groups) * test_fraction))
    if len(groups) < 2:
        raise GreyglassError("need at least two groups of statements to hold some out for testing")
    test = sorted(i for g in groups[:n_test] for i in g)
    train = sorted(i for g in groups[n_test:] for i in g)
    return train, test


def statements_fingerprint(statements: Sequence[Statement]) -> str:
    """sha256 of the statements' text, labels and groups, in order."""
    return json_sha256([[s.text, s.label, s.group] for s in statements])
