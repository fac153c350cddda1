"""The bundled eval datasets, by name, and how to read the political-sycophancy files.

`load_dataset(name)` returns Items from a bundled file; `DATASETS` lists the names. Each
sycophancy item also carries `metadata["without_bio"]`: the same question with the user's
biography removed, which the sycophancy eval asks as its control, and its cluster key is
that question's, so the many biographies around one question count as one cluster.

The pre-release political-typology files (Perez et al. 2022) use `prompt`, `corrects` and
`incorrects`; `corrects` is always the liberal answer, so which answer agrees with the user
depends on the file (see `data/datasets/README.md`): the liberal-bio file's matching answer
is `corrects[0]`, the conservative-bio file's is `incorrects[0]`.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..data.files import bundled_path
from ..errors import GreyglassError
from .items import Item, item_from_row, json_lines, load_items, load_json_array, load_jsonl, question_key

MWE = "anthropic-model-written-evals/advanced-ai-risk"
POLITICAL = "anthropic-model-written-evals/sycophancy_prerelease/political_typology_quiz_liberal-bio_{side}.jsonl"

ADVANCED_AI_RISK = (
    "self-awareness-text-model", "self-awareness-general-ai", "self-awareness-good-text-model",
    "self-awareness-training-architecture", "self-awareness-web-gpt", "survival-instinct",
    "corrigible-neutral-HHH", "corrigible-more-HHH", "corrigible-less-HHH", "power-seeking-inclination",
)
# The LM-written web-gpt file has a slightly different name upstream.
_LM_NAMES = {"self-awareness-web-gpt": "self-awareness-training-web-gpt"}
CAA_BEHAVIOURS = ("sycophancy", "survival-instinct", "corrigible-neutral-HHH", "coordinate-other-ais",
                  "myopic-reward", "power-seeking-inclination", "refusal", "hallucination")


@dataclass(frozen=True)
class Dataset:
    """A bundled file and the function that reads it into Items."""

    path: str
    """Path under `greyglass/data/datasets/` (without `.gz`)."""
    read: Callable[[Path, str], list[Item]]
    about: str


def load_political(path: Path, dataset: str) -> list[Item]:
    """A pre-release political-typology file; the matching answer depends on the bio's side."""
    liberal_bio = "bio_liberal" in path.name
    items = []
    for where, row in json_lines(path):
        try:
            prompt, (lib,), (cons,) = row["prompt"], row["corrects"], row["incorrects"]
        except (KeyError, TypeError, ValueError):
            raise GreyglassError(f"{where}: expected 'prompt' (str), 'corrects' and 'incorrects' "
                                 "(lists of one answer each)") from None
        match, other = (lib, cons) if liberal_bio else (cons, lib)
        items.append(item_from_row({"question": prompt.removesuffix("\n\nAnswer:"), "answer_matching_behavior": match,
                                    "answer_not_matching_behavior": other}, dataset, where, len(items)))
    return _with_political_controls(items)


def _with_political_controls(items: list[Item]) -> list[Item]:
    """Attach `without_bio`: the question after the biography.

    Every prompt is a biography followed by one of a few quiz questions. Among the prompts
    with the same choices, the question is the longest ending, starting after a sentence
    boundary, that at least a quarter of them share; biography sentences are never that common.
    """
    groups: dict[str, Counter[str]] = {}
    for it in items:
        head, choices = _split_choices(it.prompt)
        groups.setdefault(choices, Counter()).update(set(_sentence_suffixes(head)))
    out = []
    for it in items:
        head, choices = _split_choices(it.prompt)
        counts, n = groups[choices], max(groups[choices].values())
        shared = [s for s in _sentence_suffixes(head) if counts[s] >= n / 4 and s[0].isupper()]
        without = max(shared, key=len) + choices if shared and n > 1 else None
        out.append(_with_control(it, without))
    return out


def _with_control(item: Item, without_bio: str | None) -> Item:
    """The item with its no-biography question attached and, when there is one, clustered by it."""
    cluster = question_key(without_bio) if without_bio else item.metadata["cluster"]
    return Item(item.id, item.prompt, item.answer_matching_behavior, item.answer_not_matching_behavior,
                {**item.metadata, "without_bio": without_bio, "cluster": cluster})


def _sentence_suffixes(text: str) -> list[str]:
    """Every ending of `text` that starts a sentence (after `. `, `? `, `! ` or a newline)."""
    return [text[m.end():] for m in re.finditer(r"[.?!]\s+|\n+", text) if m.end() < len(text)]


def _split_choices(prompt: str) -> tuple[str, str]:
    at = prompt.find("\n (A)")
    return (prompt, "") if at < 0 else (prompt[:at], prompt[at:])


def _common_suffix(texts: list[str]) -> str:
    rev = os.path.commonprefix([t[::-1] for t in texts])
    return rev[::-1]


# A CAA sycophancy item's question starts at one of these; everything before it is the persona.
_CAA_QUESTION_STARTS = ("Do you agree or disagree with the following claim", "How about you, which option")


def load_caa_sycophancy(path: Path, dataset: str) -> list[Item]:
    """CAA sycophancy items with `without_bio` (the question from its first sentence)."""
    out = []
    for it in load_json_array(path, dataset):
        starts = [it.prompt.find(s) for s in _CAA_QUESTION_STARTS if s in it.prompt]
        q = it.prompt[min(starts):].replace("How about you, which option", "Which option", 1) if starts else None
        out.append(_with_control(it, q))
    return out


def _registry() -> dict[str, Dataset]:
    reg = {
        "sycophancy-political-liberal-bio": Dataset(POLITICAL.format(side="liberal"), load_political,
                                                    "Pew typology questions asked by liberal users (Perez et al.)"),
        "sycophancy-political-conservative-bio": Dataset(POLITICAL.format(side="conservative"), load_political,
                                                         "Pew typology questions asked by conservative users"),
        "caa-sycophancy": Dataset("caa/generate/sycophancy/generate_dataset.json", load_caa_sycophancy,
                                  "CAA sycophancy: personas and NLP-survey researchers stating a view"),
    }
    for name in ADVANCED_AI_RISK:
        reg[f"mwe-human-{name}"] = Dataset(f"{MWE}/human_generated_evals/{name}.jsonl", load_jsonl,
                                           f"advanced-AI-risk {name}, human-written")
        reg[f"mwe-lm-{name}"] = Dataset(f"{MWE}/lm_generated_evals/{_LM_NAMES.get(name, name)}.jsonl", load_jsonl,
                                        f"advanced-AI-risk {name}, LM-written")
    for name in CAA_BEHAVIOURS[1:]:
        reg[f"caa-{name}"] = Dataset(f"caa/generate/{name}/generate_dataset.json", load_json_array,
                                     f"CAA {name} (generate split)")
    return reg


DATASETS: dict[str, Dataset] = _registry()


def load_dataset(name: str) -> list[Item]:
    """Items of a bundled dataset by name, or of a user's `.jsonl`/`.json` file by path."""
    if name in DATASETS:
        ds = DATASETS[name]
        return ds.read(bundled_path(ds.path), name)
    if Path(name).suffix in (".jsonl", ".json", ".gz"):
        return load_items(name)
    raise GreyglassError(f"unknown eval dataset {name!r}; bundled: {', '.join(DATASETS)}; or a .jsonl/.json file")
