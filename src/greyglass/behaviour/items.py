"""Eval items and the two file formats they come in.

An item is one multiple-choice question: the user's text, the answer a model showing the
behaviour would give (`answer_matching_behavior`) and the other answer(s). Two public
formats are read:

- model-written-eval JSONL (Perez et al. 2022): one object a line with `question`,
  `answer_matching_behavior`, `answer_not_matching_behavior` (answers like `" (A)"`; the
  last may be a list);
- CAA JSON (Rimsky et al. 2024): one array of objects with the same three fields (answers
  like `"(A)"`, no leading space).

Answers are stored stripped (`"(A)"`); the prompt format decides what goes before them.
A malformed row is a `GreyglassError` naming the file and line.

Every item carries `metadata["cluster"]`, a key of the question it asks: items that share a
question (one quiz question behind many biographies) are not independent evidence, so
intervals resample clusters, not rows. A row may give it (`cluster`, a string) and the same
question without the user's view (`without_bio`, a string: the sycophancy eval's control);
both are optional. `with_answers_swapped` gives the same item with the
two answers' texts exchanged between their letters, so a model's preference for a letter
can be told apart from its preference for an answer.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.files import read_text, text_lines
from ..errors import GreyglassError
from ..json_files import parse_json

FIELDS = ("question", "answer_matching_behavior", "answer_not_matching_behavior")
OPTIONAL_FIELDS = ("cluster", "without_bio")


@dataclass(frozen=True)
class Item:
    """One multiple-choice question with the answer that shows the behaviour."""

    id: str
    """Unique within a run: `<dataset>/<row>` (plus a suffix for derived items)."""
    prompt: str
    """The user's turn: question and choices, as the dataset gives it."""
    answer_matching_behavior: str
    """The answer a model showing the behaviour gives, e.g. `(A)`."""
    answer_not_matching_behavior: tuple[str, ...]
    """The other answer(s)."""
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)
    """Dataset name, source file and line, cluster (the question's key), condition, answer order, ..."""

    @property
    def choices(self) -> tuple[str, ...]:
        """Every answer scored, in letter order."""
        return tuple(sorted({self.answer_matching_behavior, *self.answer_not_matching_behavior}))

    @property
    def matching_index(self) -> int:
        return self.choices.index(self.answer_matching_behavior)

    def derive(self, suffix: str, prompt: str, **metadata: Any) -> "Item":
        """The same question asked differently (e.g. without the user's biography)."""
        return Item(f"{self.id}/{suffix}", prompt, self.answer_matching_behavior,
                    self.answer_not_matching_behavior, {**self.metadata, "base_id": self.id, **metadata})


def item_from_row(row: Any, dataset: str, where: str, index: int) -> Item:
    """Check one decoded row and build its Item; `where` is `file:line` for errors."""
    if not isinstance(row, dict):
        raise GreyglassError(f"{where}: expected a JSON object with {', '.join(FIELDS)}, got {type(row).__name__}")
    missing = [f for f in FIELDS if f not in row]
    if missing:
        raise GreyglassError(f"{where}: missing field(s) {', '.join(missing)}; each row needs {', '.join(FIELDS)}")
    question, match, other = (row[f] for f in FIELDS)
    others = other if isinstance(other, list) else [other]
    if not isinstance(question, str) or not question.strip():
        raise GreyglassError(f"{where}: field 'question' must be a non-empty string")
    for name, answers, shape in ((FIELDS[1], [match], "a non-empty string"),
                                 (FIELDS[2], others, "a non-empty string or a list of them")):
        if not all(isinstance(a, str) and a.strip() for a in answers):
            raise GreyglassError(f"{where}: field {name!r} must be {shape}")
    match, others = match.strip(), tuple(a.strip() for a in others)
    if match in others:
        raise GreyglassError(f"{where}: answer_matching_behavior {match!r} is also listed as not matching")
    for name in OPTIONAL_FIELDS:
        if name in row and not (isinstance(row[name], str) and row[name].strip()):
            raise GreyglassError(f"{where}: optional field {name!r} must be a non-empty string when given")
    metadata = {"dataset": dataset, "source": where, "cluster": row.get("cluster") or question_key(question)}
    return Item(f"{dataset}/{index}", question, match, others,
                metadata | ({"without_bio": row["without_bio"]} if "without_bio" in row else {}))


def question_key(question: str) -> str:
    """A short key naming a question: equal texts (e.g. one quiz question asked in two files) share it."""
    return hashlib.sha256(question.strip().encode()).hexdigest()[:12]


def with_answers_swapped(item: Item) -> Item | None:
    """The item with its two answers' texts exchanged between their letters, or None when that
    cannot be done (not two answers, or a letter not listed exactly once as ` (A) text` on its own line).

    The letters stay where they are; the text after `(A)` moves to `(B)` and back, so the
    answer matching the behaviour changes letter.
    """
    if len(item.choices) != 2:
        return None
    first, second = (_option_line(item.prompt, label) for label in item.choices)
    if first is None or second is None:
        return None
    (a_start, a_end), (b_start, b_end) = sorted([first, second])
    a_text, b_text = item.prompt[a_start:a_end], item.prompt[b_start:b_end]
    prompt = item.prompt[:a_start] + b_text + item.prompt[a_end:b_start] + a_text + item.prompt[b_end:]
    other = next(c for c in item.choices if c != item.answer_matching_behavior)
    return Item(f"{item.id}/swapped", prompt, other, (item.answer_matching_behavior,),
                {**item.metadata, "order": "swapped", "unswapped_id": item.id})


def _option_line(prompt: str, label: str) -> tuple[int, int] | None:
    """Where the text after `label` (e.g. `(A)`) runs on the one line that starts with it."""
    found = list(re.finditer(rf"^[ \t]*{re.escape(label)}(.*)$", prompt, re.M))
    return found[0].span(1) if len(found) == 1 else None


def json_lines(path: str | Path) -> Iterator[tuple[str, Any]]:
    """(`file:line`, decoded row) for each non-blank line of a JSONL file."""
    for lineno, line in text_lines(path):
        if line.strip():
            yield f"{path}:{lineno}", parse_json(line, f"{path}:{lineno}")


def load_jsonl(path: str | Path, dataset: str) -> list[Item]:
    """Model-written-eval JSONL: one row a line, blank lines skipped."""
    items = [item_from_row(row, dataset, where, i) for i, (where, row) in enumerate(json_lines(path))]
    return _non_empty(items, path)


def load_json_array(path: str | Path, dataset: str) -> list[Item]:
    """CAA JSON: one array of rows; errors name the row's line in the file."""
    text = read_text(path)
    rows = parse_json(text, str(path))
    if not isinstance(rows, list):
        raise GreyglassError(f"{path}: expected a JSON array of rows with {', '.join(FIELDS)}")
    lines = _row_lines(text, len(rows))
    return _non_empty([item_from_row(row, dataset, f"{path}:{line}", i) for i, (row, line) in enumerate(zip(rows, lines))],
                      path)


def load_items(path: str | Path, dataset: str | None = None) -> list[Item]:
    """Items from a user's file: `.jsonl` (model-written-eval) or `.json` (CAA), optionally `.gz`."""
    path = Path(path)
    name = dataset or path.name.removesuffix(".gz")
    suffixes = path.name.removesuffix(".gz")
    if suffixes.endswith(".jsonl"):
        return load_jsonl(path, name)
    if suffixes.endswith(".json"):
        return load_json_array(path, name)
    raise GreyglassError(f"{path}: eval data must be .jsonl (one row a line) or .json (an array of rows)")


def _row_lines(text: str, n: int) -> list[int]:
    """The 1-based line where each top-level array element starts (for error messages)."""
    decoder = json.JSONDecoder()
    lines, pos = [], text.index("[") + 1
    for _ in range(n):
        while text[pos] in " \t\r\n,":
            pos += 1
        lines.append(text.count("\n", 0, pos) + 1)
        _, pos = decoder.raw_decode(text, pos)
    return lines


def _non_empty(items: list[Item], path: str | Path) -> list[Item]:
    if not items:
        raise GreyglassError(f"{path}: no rows")
    return items
