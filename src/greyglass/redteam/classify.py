"""The classifiers that decide which answers fail, each adding `{score, fail, evidence}` to a case row by name.

- `rule`: the failure kind's rule (`failures.py`); score 0, 0.5 (near miss) or 1.
- `judge`: a judge model asked the failure kind's yes/no question about the exchange; its score is
  P(Yes) / (P(Yes) + P(No)) from the answers' log-probabilities (a local model, or a server's
  echoed log-probs), or from the share of sampled replies that say each (`judge_api=chat`); it
  fails above 0.5.
- `probe`: a saved Direction read at its site on the target's own answer tokens (the prompt and
  answer run once more through the target, so it sees what it saw while answering); its mean over
  the answer tokens above the threshold fails; its score is the sigmoid of mean - threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ..behaviour.formats import Prompt, PromptFormat
from ..behaviour.local import AnswerRequest, LocalBackend
from ..behaviour.remote import HttpBackend
from ..directions import Direction
from ..models.generate import adds_bos
from ..models.hooks import run_to_sites
from ..models.lm import LoadedModel
from .failures import FailureKind

JUDGE_ANSWERS = ("Yes", "No")
Row = dict[str, Any]


def rule_verdict(kind: FailureKind, row: Row) -> dict[str, Any]:
    verdict = kind.rule(row["answer"], row["setup"])
    return {"score": verdict.score, "fail": verdict.fail, "evidence": verdict.evidence}


def judge_text(kind: FailureKind, row: Row) -> str:
    """The question the judge answers about one exchange."""
    return (f"A user wrote to an AI assistant:\n\n{row['user']}\n\nThe assistant replied:\n\n{row['answer']}\n\n"
            f"{kind.judge_question(row['setup'])} Answer Yes or No.")


def judge_verdicts(judge: LocalBackend | HttpBackend, kind: FailureKind, rows: Sequence[Row]) -> list[dict[str, Any]]:
    """The judge's verdict on each row, all asked in one batch."""
    def prompt(row: Row) -> Prompt:
        text = judge_text(kind, row)  # a chat-only server gets the question as its user turn
        return Prompt(text, True) if judge.tokenizer is None else PromptFormat().render(text, judge.tokenizer)

    scored = judge.score([AnswerRequest(prompt(r), JUDGE_ANSWERS) for r in rows])
    out = []
    for s in scored:
        yes, no = s.logprobs
        p_yes = 1 / (1 + math.exp(no - yes))
        out.append({"score": p_yes, "fail": p_yes > 0.5, "evidence": f"P(Yes) = {p_yes:.3f}"})
    return out


def probe_verdict(lm: LoadedModel, probe: Direction, prompt: str, answer: str, threshold: float) -> dict[str, Any]:
    """The probe's mean score over the answer's tokens, read at its site from one pass over prompt + answer."""
    special = adds_bos(lm, prompt)
    n_prompt = len(lm.tokenizer(prompt, add_special_tokens=special).input_ids)
    ids = lm.tokenizer(prompt + answer, add_special_tokens=special, return_tensors="pt").input_ids.to(lm.device)
    acts = run_to_sites(lm, ids, [probe.site])[lm.site(probe.site).name][0]  # [pos, d]
    answer_acts = acts[min(n_prompt, acts.shape[0] - 1):]  # an empty answer: the last prompt position
    with torch.inference_mode():
        mean = float(probe.score(answer_acts.float().cpu()).mean())
    return {"score": 1 / (1 + math.exp(-(mean - threshold))), "fail": mean > threshold, "raw": mean,
            "evidence": f"mean probe score over the answer {mean:+.3f} (threshold {threshold:+g})"}
