"""What the model answers: the belief and the reality question of each story, scored as eval items.

Each question becomes a behaviour-eval `Item` whose prompt is the story, the question and the
two candidates ("Is it the blue jar or the red tin?"), whose matching answer is the right one
and whose other answer is the other candidate. It is asked in both candidate orders, scored
by answer log-probability with the eval's `LocalBackend` (the prompt rendered by the eval's
`PromptFormat`), and the two orders are combined by the eval's `combine_orders`, so a lean
towards the first-named candidate cancels. Accuracy is the share of stories whose right
answer is the likelier, with a 95% interval that resamples stories (`scorers.summarise`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tqdm.auto import tqdm

from ..behaviour.formats import PromptFormat
from ..behaviour.items import Item
from ..behaviour.local import AnswerRequest, LocalBackend
from ..behaviour.scorers import combine_orders, score_match, summarise
from ..models.lm import LoadedModel
from .config import AnswerAccuracy
from .stories import CONDITIONS, QUESTIONS, Condition, Question, Story

ORDERS = ("original", "swapped")


def question_item(story: Story, question: Question, condition: Condition, order: str) -> Item:
    """One question about one version of a story, the candidates named in `order`."""
    first, second = story.candidates if order == "original" else story.candidates[::-1]
    right = story.answer(question, condition)
    base = f"{story.id}/{question}/{condition}"
    return Item(f"{base}/{order}", f"{story.texts[condition]}\n\n{story.question(question)} Is it {first} or {second}?",
                right, (story.other(right),),
                {"dataset": "tom", "condition": condition, "cluster": story.id, "order": order,
                 **({"unswapped_id": base} if order == "swapped" else {})})


def answer_records(lm: LoadedModel, stories: Sequence[Story], question: Question, condition: Condition,
                   prompt: PromptFormat, batch_size: int, progress: bool = False) -> list[dict[str, Any]]:
    """One record per story (`p_match`, `matched`, `cluster`...), both candidate orders combined."""
    items = [question_item(s, question, condition, order) for s in stories for order in ORDERS]
    backend = LocalBackend(lm)
    rows = []
    starts = range(0, len(items), batch_size)
    for start in tqdm(starts, desc=f"{question} / {condition}", unit="batch", disable=not progress):
        chunk = items[start : start + batch_size]
        scored = backend.score([AnswerRequest(prompt.render(it.prompt, lm.tokenizer), it.choices) for it in chunk])
        rows += [_row(it, s.logprobs) for it, s in zip(chunk, scored)]
    return combine_orders(rows)


def _row(item: Item, logprobs: list[float]) -> dict[str, Any]:
    base = item.metadata.get("unswapped_id", item.id)
    return {"id": item.id, "base_id": base, **item.metadata, **score_match(item, logprobs)}


def accuracy_of(records: list[dict[str, Any]], question: Question, condition: Condition, seed: int) -> AnswerAccuracy:
    summary = summarise(records, seed)
    return AnswerAccuracy(question, condition, summary.matched, summary.p_match, summary.n)


def behaviour(lm: LoadedModel, stories: Sequence[Story], prompt: PromptFormat, batch_size: int, seed: int,
              progress: bool = False) -> tuple[dict[tuple[str, str], list[dict[str, Any]]], tuple[AnswerAccuracy, ...]]:
    """Every (question, condition)'s per-story records and its accuracy."""
    records = {(q, c): answer_records(lm, stories, q, c, prompt, batch_size, progress)
               for q in QUESTIONS for c in CONDITIONS}
    return records, tuple(accuracy_of(r, q, c, seed) for (q, c), r in records.items())


def verdict(accuracies: Sequence[AnswerAccuracy]) -> str:
    """tracks_belief: right about belief in both conditions (95% intervals above chance);
    reality_only: gives reality where belief differs (false-belief belief answers below chance);
    unclear otherwise."""
    acc = {(a.question, a.condition): a.correct for a in accuracies}
    if acc["belief", "false_belief"].lo > 0.5 and acc["belief", "true_belief"].lo > 0.5:
        return "tracks_belief"
    if acc["belief", "false_belief"].hi < 0.5:
        return "reality_only"
    return "unclear"
