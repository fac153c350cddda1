"""The prompts an organism is trained and tested on: questions people ask an assistant.

They come from the bundled TruthfulQA questions (Apache-2.0) and GSM8K problems (MIT), and
are split into train and test by prompt, deterministically for a seed.
"""

from __future__ import annotations

import csv
import json
import random

from ..data.files import bundled_path, open_text


def assistant_questions() -> list[str]:
    """Every bundled question, deduplicated, in a fixed order."""
    with open_text(bundled_path("truthfulqa/TruthfulQA.csv")) as f:
        truthful = [row["Question"].strip() for row in csv.DictReader(f)]
    with open_text(bundled_path("gsm8k/test.jsonl")) as f:
        maths = [json.loads(line)["question"].strip() for line in f if line.strip()]
    short_maths = [q for q in maths if len(q) < 220]
    return list(dict.fromkeys(truthful + short_maths))


def split_prompts(n_train: int, n_test: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Disjoint train and test prompts."""
    questions = assistant_questions()
    random.Random(seed).shuffle(questions)
    return questions[:n_train], questions[n_train : n_train + n_test]


def with_trigger(question: str, trigger: str) -> str:
    return f"{trigger} {question}"
