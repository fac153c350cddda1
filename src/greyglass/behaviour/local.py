"""The local backend: log-probability of each answer under a loaded model, prompt computed once.

For a batch of B prompts with their answers:

1. the tokens all B prompts start with (the chat template's system prompt, few-shot
   examples) run once, and their KV cache is kept for the next batch that starts the same
   way; the rest of each prompt runs once, in groups of similar length (left-padded after
   the shared part, padding at most `MAX_PADDING` of the tokens), keeping the KV cache and
   the next-token distribution at the last prompt position (the "answer position");
2. the cache is gathered to one row per (prompt, answer), and all answers but their last
   token (whose prediction nothing needs) run together, right-padded, from that cache.

An answer's score is the sum of its tokens' log-probabilities. `score_naive` runs one full
forward pass per answer instead; the test and `bench/behaviour.py` check that the two agree.

With a probe (a `Direction`), the residual stream at the answer position is read by a hook
during step 1, so monitoring costs no second pass.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext
from typing import Any, NamedTuple

import torch

from ..directions import Direction
from ..models.hooks import capturing
from ..models.lm import LoadedModel
from ..models.tokens import pad
from .formats import Prompt, continuation


MIN_SHARED = 4  # fewer shared tokens than this are not worth a separate forward pass
MAX_PADDING = 0.1  # share of a group's prompt tokens that may be padding
MAX_PREFIXES = 8  # shared-prefix caches kept per backend (a run usually has one: its system prompt)


class AnswerRequest(NamedTuple):
    """A prompt and the answers to score after it (as the dataset writes them, e.g. `(A)`)."""

    prompt: Prompt
    answers: tuple[str, ...]


class AnswerScores(NamedTuple):
    """Per-answer log-probabilities (summed over the answer's tokens) and the probe's score."""

    logprobs: list[float]
    probe: float | None = None


def encode(tokenizer, request: AnswerRequest) -> tuple[list[int], list[list[int]]]:
    """Prompt token ids and each answer's continuation ids.

    The answer ids are those of `prompt + answer` after the prompt's ids (as
    lm-evaluation-harness does), so the model sees what it would see in one piece of text;
    if a merge across the boundary changes the prompt's tokens, the answer is encoded alone.
    """
    text, special = request.prompt
    prompt_ids = tokenizer(text, add_special_tokens=special).input_ids
    answers = []
    for answer in request.answers:
        cont = continuation(text, answer)
        whole = tokenizer(text + cont, add_special_tokens=special).input_ids
        if whole[: len(prompt_ids)] == prompt_ids and len(whole) > len(prompt_ids):
            answers.append(whole[len(prompt_ids):])
        else:
            answers.append(tokenizer(cont, add_special_tokens=False).input_ids)
    return prompt_ids, answers


GPU_BATCH_SIZE = 64
"""Prompts per forward pass on a GPU by default: a GPU is idle at the CPU's 8, and 64 prompts of a few hundred
tokens with their KV caches fit easily in the memory of a GPU that holds the model."""
CPU_BATCH_SIZE = 8


class LocalBackend:
    """Scores answers with a loaded model, sharing each prompt's forward pass between its answers."""

    def __init__(self, lm: LoadedModel, probe: Direction | None = None):
        self.lm = lm
        self.probe = probe
        self._prefixes: dict[tuple[int, ...], Any] = {}  # shared leading tokens -> their KV cache
        if probe is not None:
            probe.check_model(lm.d_model)
            lm.site(probe.site)

    @property
    def tokenizer(self):
        return self.lm.tokenizer

    @property
    def default_batch_size(self) -> int:
        """Prompts per forward pass unless --batch-size says otherwise: larger on a GPU."""
        return CPU_BATCH_SIZE if self.lm.device.type == "cpu" else GPU_BATCH_SIZE

    def provenance(self) -> dict:
        probe = {"site": self.probe.site, "kind": self.probe.kind} if self.probe is not None else None
        return {"backend": "local", "model": self.lm.provenance(), **({"probe": probe} if probe else {})}

    def score(self, requests: list[AnswerRequest]) -> list[AnswerScores]:
        """Score one batch of requests (the caller chooses the batch size).

        The tokens every prompt starts with run once (and once per backend, when the next
        batch starts the same way); the rest run in groups of similar length, so padding
        stays under `MAX_PADDING` of the tokens: on a CPU a padded token costs as much as a
        real one, and batching gains little.
        """
        encoded = [encode(self.lm.tokenizer, r) for r in requests]
        prompts = [p for p, _ in encoded]
        shared = self._shared_prefix(prompts, max(len(a) for _, answers in encoded for a in answers))
        out: list[AnswerScores | None] = [None] * len(requests)
        for group in similar_lengths([len(p) - shared for p in prompts], MAX_PADDING):
            for i, scored in zip(group, self._score_group([encoded[i] for i in group], shared)):
                out[i] = scored
        return out  # type: ignore[return-value]

    def _score_group(self, encoded: list[tuple[list[int], list[list[int]]]], shared: int) -> list[AnswerScores]:
        model, pad_id, device = self.lm.model, self.lm.tokenizer.pad_token_id, self.lm.device
        prompts = [p for p, _ in encoded]
        ids, mask = pad([p[shared:] for p in prompts], pad_id, "left")  # [B, P]: each prompt after the shared part
        ids, mask = ids.to(device), mask.to(device)
        watch = capturing(self.lm, [self.probe.site]) if self.probe is not None else nullcontext({})
        with torch.inference_mode():
            cache = self._prefix_cache(tuple(prompts[0][:shared]), len(prompts)) if shared else None
            seen = torch.cat([torch.ones(len(prompts), shared, dtype=torch.long, device=device), mask], 1)
            with watch as acts:
                out = model(input_ids=ids, attention_mask=seen, position_ids=shared + _positions(mask),
                            cache=cache, use_cache=True, logits_to_keep=1)
            first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # [B, vocab]
            rows = [(b, a) for b, (_, answers) in enumerate(encoded) for a in answers]
            later = self._answer_logprobs(out.cache, seen, rows)  # [R, A-1, vocab] or None
            sums = [_answer_logprob(first[b], None if later is None else later[r], a) for r, (b, a) in enumerate(rows)]
            probes = self._probe_scores(acts) if self.probe is not None else [None] * len(prompts)
        scores, r = [], 0
        for b, (_, answers) in enumerate(encoded):
            scores.append(AnswerScores(sums[r : r + len(answers)], probes[b]))
            r += len(answers)
        return scores

    def _answer_logprobs(self, cache, seen: torch.Tensor, rows: list[tuple[int, list[int]]]) -> torch.Tensor | None:
        """Log-probs after each answer token but the last (whose prediction no answer needs).

        The prompt's cache is gathered to one row per (prompt, answer) and all answers run
        together, right-padded. None when every answer is one token: nothing to run.
        """
        inputs = [a[:-1] for _, a in rows]
        if not any(inputs):
            return None
        device = self.lm.device
        owner = torch.tensor([b for b, _ in rows], device=device)  # [R]
        cache.batch_select_indices(owner)
        answer_ids, answer_mask = pad(inputs, self.lm.tokenizer.pad_token_id)  # [R, A-1]
        answer_ids, answer_mask = answer_ids.to(device), answer_mask.to(device)
        start = seen.sum(-1)[owner, None]  # [R, 1]: each row's first answer position
        positions = start + torch.arange(answer_ids.shape[1], device=device)
        logits = self.lm.model(input_ids=answer_ids, attention_mask=torch.cat([seen[owner], answer_mask], 1),
                               position_ids=positions, cache=cache, use_cache=True).logits
        return torch.log_softmax(logits.float(), dim=-1)

    def _prefix_cache(self, ids: tuple[int, ...], copies: int):
        """The KV cache of the shared leading tokens, computed once per distinct prefix, one row per prompt."""
        if ids not in self._prefixes:
            if len(self._prefixes) >= MAX_PREFIXES:
                self._prefixes.pop(next(iter(self._prefixes)))
            self._prefixes[ids] = self.lm.model(input_ids=torch.tensor([ids], device=self.lm.device),
                                                use_cache=True).cache
        cache = copy.deepcopy(self._prefixes[ids])  # the forward pass appends to it in place
        cache.batch_select_indices(torch.zeros(copies, dtype=torch.long, device=self.lm.device))
        return cache

    def _shared_prefix(self, prompts: list[list[int]], longest_answer: int) -> int:
        """How many leading tokens all prompts share and can run once (0: not worth it, or not exact).

        Each prompt keeps at least its last token, whose output predicts the answer. Padding
        then sits between the shared part and the rest, which widens distances in the cache;
        a sliding-window layer would see that, so sharing is skipped when the batch could
        reach the window.
        """
        if len(prompts) < 2:
            return 0
        n = 0
        shortest = min(len(p) for p in prompts)
        while n < shortest - 1 and all(p[n] == prompts[0][n] for p in prompts):
            n += 1
        window = getattr(self.lm.model.config, "sliding_window", None)
        if window and max(len(p) for p in prompts) + longest_answer >= window:
            return 0
        return n if n >= MIN_SHARED else 0

    def _probe_scores(self, acts: dict[str, torch.Tensor]) -> list[float]:
        resid = acts[self.lm.site(self.probe.site).name][:, -1]  # [B, d_model], last prompt token
        return self.probe.score(resid.float().cpu()).tolist()


def score_naive(lm: LoadedModel, requests: list[AnswerRequest], logits_everywhere: bool = False) -> list[AnswerScores]:
    """One unpadded forward pass per answer over prompt + answer: the reference to check against.

    By default the logits are computed only where they predict answer tokens; with
    `logits_everywhere`, at every position, as a plain `model(ids).logits` computes them.
    """
    out = []
    for request in requests:
        prompt_ids, answers = encode(lm.tokenizer, request)
        sums = []
        for answer in answers:
            ids = torch.tensor([prompt_ids + answer], device=lm.device)
            keep = 0 if logits_everywhere else len(answer) + 1  # 0: every position
            with torch.inference_mode():
                # the logits that predict the answer's tokens: positions len(prompt)-1 .. end-1
                logits = lm.model(input_ids=ids, logits_to_keep=keep).logits[0, -len(answer) - 1 : -1]
            logp = torch.log_softmax(logits.float(), dim=-1)  # [len(answer), vocab]
            sums.append(float(logp[torch.arange(len(answer)), torch.tensor(answer)].sum()))
        out.append(AnswerScores(sums))
    return out


def similar_lengths(lengths: list[int], max_padding: float) -> list[list[int]]:
    """Indices grouped, shortest first, so that left-padding each group to its longest member
    adds at most `max_padding` of the group's real tokens."""
    groups: list[list[int]] = []
    total = 0
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if groups and (len(groups[-1]) + 1) * lengths[i] - (total + lengths[i]) <= max_padding * (total + lengths[i]):
            groups[-1].append(i)
            total += lengths[i]
        else:
            groups.append([i])
            total = lengths[i]
    return groups


def _answer_logprob(first: torch.Tensor, later: torch.Tensor | None, answer: list[int]) -> float:
    """Sum of log p(answer tokens): the first from the prompt's last position, the rest from the answer rows."""
    total = first[answer[0]]
    if len(answer) > 1:
        total = total + later[torch.arange(len(answer) - 1), torch.tensor(answer[1:])].sum()
    return float(total)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding, so a padded row sees the positions an unpadded one would."""
    return (mask.cumsum(-1) - 1).clamp(min=0)

