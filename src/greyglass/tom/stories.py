"""False-belief stories generated from scenario templates (BigToM-style; Zhu et al. 2024).

A template (`data/templates.json`, written for greyglass) tells one scenario: a setting, the
agent putting an object in a state `{x}`, an event that changes it to `{y}`, and one sentence
saying the agent perceives the event (true belief) or one saying the agent does not (false
belief). Each story is asked two questions, what the agent believes and what is true, with the
two states as candidate answers:

| condition     | belief answer | reality answer |
|---------------|---------------|----------------|
| true belief   | `{y}`         | `{y}`          |
| false belief  | `{x}`         | `{y}`          |

so belief and reality come apart only in the false-belief version. Generation is deterministic
for a seed and balanced: every template gets the same number of stories, every answer pair is
used in both directions (which state comes first) equally often, and the agent's gender (the
"irrelevant feature" the probes use as a control) is balanced independently of both. Nothing
in a story's words says which candidate is the answer: only their order in the story does (the
bag-of-words test in tests/unit/test_tom_stories.py holds this).
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import GreyglassError
from ..json_files import read_json_object

Condition = Literal["true_belief", "false_belief"]
CONDITIONS: tuple[Condition, ...] = ("true_belief", "false_belief")
Question = Literal["belief", "reality"]
QUESTIONS: tuple[Question, ...] = ("belief", "reality")
GENDERS = ("female", "male")

TEMPLATES = Path(__file__).parent / "data" / "templates.json"
TEXT_FIELDS = ("setting", "initial", "event", "perceived", "unperceived", "belief_question", "reality_question",
               "statement")
# the placeholders each field may use; the perception sentences may not name a state, or their
# words would tell which candidate the agent believes
ALLOWED = {"initial": {"agent", "x"}, "event": {"agent", "y"}, "statement": {"agent", "option"}}
REQUIRED = {"initial": {"x"}, "event": {"y"}, "statement": {"option"}}


@dataclass(frozen=True)
class Template:
    id: str
    setting: str
    initial: str
    event: str
    perceived: str
    unperceived: str
    belief_question: str
    reality_question: str
    statement: str
    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Story:
    """One generated story, told in a true-belief and a false-belief version."""

    id: str
    template: str
    agent: str
    gender: str
    initial: str
    """The state before the event (`{x}`): the false-belief answer to the belief question."""
    changed: str
    """The state after it (`{y}`): the answer to the reality question in both versions."""
    candidates: tuple[str, str]
    """The two states in the template's listed order (not story order), so their order says nothing."""
    texts: dict[str, str]
    """Condition -> the story's text."""
    belief_question: str
    reality_question: str
    statements: dict[str, str]
    """Candidate -> a statement that it is the current state (for the probes)."""

    def answer(self, question: Question, condition: Condition) -> str:
        if question == "belief" and condition == "false_belief":
            return self.initial
        return self.changed

    def question(self, question: Question) -> str:
        return self.belief_question if question == "belief" else self.reality_question

    def other(self, answer: str) -> str:
        return self.candidates[1] if answer == self.candidates[0] else self.candidates[0]


def load_templates(path: str | Path | None = None) -> tuple[dict[str, list[str]], list[Template]]:
    """(agents by gender, templates) from a template file (default: the bundled one), checked field by field."""
    path = Path(path) if path is not None else TEMPLATES
    data = read_json_object(path)
    if not isinstance(data.get("templates"), list) or not data["templates"]:
        raise GreyglassError(f"{path}: field 'templates' must be a non-empty list of scenario templates")
    agents = _agents(path, data.get("agents"))
    templates = [_template(path, i, row) for i, row in enumerate(data["templates"])]
    ids = [t.id for t in templates]
    if len(set(ids)) < len(ids):
        raise GreyglassError(f"{path}: field 'id': template ids must be unique ({_first_repeat(ids)!r} repeats)")
    return agents, templates


def _agents(path: Path, agents: object) -> dict[str, list[str]]:
    if not isinstance(agents, dict) or set(agents) != set(GENDERS):
        raise GreyglassError(f"{path}: field 'agents' must map 'female' and 'male' to lists of names")
    for gender, names in agents.items():
        if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, str) and n.strip() for n in names):
            raise GreyglassError(f"{path}: field 'agents.{gender}' must list at least two non-empty names")
    return {g: list(agents[g]) for g in GENDERS}


def _template(path: Path, i: int, row: object) -> Template:
    where = f"{path}: template {i}"
    if not isinstance(row, dict):
        raise GreyglassError(f"{where}: expected an object with id, {', '.join(TEXT_FIELDS)}, pairs")
    if not isinstance(row.get("id"), str) or not row["id"].strip():
        raise GreyglassError(f"{where}: field 'id' must be a non-empty string")
    where = f"{path}: template {i} ('{row['id']}')"
    for name in TEXT_FIELDS:
        text = row.get(name)
        if not isinstance(text, str) or not text.strip():
            raise GreyglassError(f"{where}, field '{name}': missing or not a non-empty string")
        used = _placeholders(text, f"{where}, field '{name}'")
        allowed, required = ALLOWED.get(name, {"agent"}), REQUIRED.get(name, set())
        if used - allowed:
            raise GreyglassError(f"{where}, field '{name}': placeholder(s) {', '.join(sorted(used - allowed))} not "
                                 f"allowed here (allowed: {', '.join(sorted(allowed))})")
        if required - used:
            raise GreyglassError(f"{where}, field '{name}': must contain {{{', '.join(sorted(required - used))}}}")
    pairs = row.get("pairs")
    if not isinstance(pairs, list) or not pairs:
        raise GreyglassError(f"{where}, field 'pairs': must be a non-empty list of [state, state] pairs")
    for j, pair in enumerate(pairs):
        if (not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(s, str) and s.strip() for s in pair)
                or pair[0] == pair[1]):
            raise GreyglassError(f"{where}, field 'pairs[{j}]': must be two different non-empty strings, got {pair!r}")
    return Template(row["id"], *(row[name] for name in TEXT_FIELDS), tuple((a, b) for a, b in pairs))


def _placeholders(text: str, where: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as e:
        raise GreyglassError(f"{where}: bad placeholder ({e}); write {{agent}}, {{x}}, {{y}} or {{option}}") from None


def _first_repeat(names: list[str]) -> str:
    return next(n for i, n in enumerate(names) if n in names[:i])


def generate_stories(n: int = 520, seed: int = 0, path: str | Path | None = None) -> list[Story]:
    """`n` stories, deterministic for `seed`, round-robin over the templates (see the module docstring)."""
    agents, templates = load_templates(path)
    if n < 2 * len(templates):
        raise GreyglassError(f"n_stories must be at least {2 * len(templates)} (two per template), got {n}")
    rng = random.Random(seed)
    plans = {t.id: _plan(t, -(-n // len(templates)), rng) for t in templates}
    stories = []
    for i in range(n):
        t = templates[i % len(templates)]
        pair, flipped, gender = plans[t.id][i // len(templates)]
        stories.append(_story(f"{t.id}/{i // len(templates)}", t, pair, flipped, gender, rng.choice(agents[gender])))
    return stories


def _plan(t: Template, k: int, rng: random.Random) -> list[tuple[tuple[str, str], bool, str]]:
    """k (pair, flipped, gender) draws: pairs and directions cycle evenly, genders are shuffled separately."""
    cells = [(pair, flipped) for pair in t.pairs for flipped in (False, True)]
    cells = [cells[j % len(cells)] for j in range(k)]
    rng.shuffle(cells)
    genders = [GENDERS[j % 2] for j in range(k)]
    rng.shuffle(genders)
    return [(pair, flipped, g) for (pair, flipped), g in zip(cells, genders)]


def _story(sid: str, t: Template, pair: tuple[str, str], flipped: bool, gender: str, agent: str) -> Story:
    x, y = (pair[1], pair[0]) if flipped else pair
    fill = {"agent": agent, "x": x, "y": y}
    start = f"{t.setting.format(**fill)} {t.initial.format(**fill)} {t.event.format(**fill)}"
    texts = {"true_belief": f"{start} {t.perceived.format(**fill)}",
             "false_belief": f"{start} {t.unperceived.format(**fill)}"}
    return Story(sid, t.id, agent, gender, x, y, pair, texts, t.belief_question.format(**fill),
                 t.reality_question.format(**fill),
                 {c: t.statement.format(agent=agent, option=c) for c in pair})
