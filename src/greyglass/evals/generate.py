"""Decoding with a KV cache: greedy or seeded sampling, with each new token's log-prob and top alternatives.

Used by `serve-model` and the chain-of-thought eval. One sequence at a time, which is what
both need (a server request, one reasoning chain).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..models import LoadedModel


class Decoded(NamedTuple):
    """New token ids, their log-probs and top alternatives, why decoding stopped, and the prompt's log-probs."""

    ids: list[int]
    logprobs: list[float]
    top: list[list[tuple[int, float]]]
    finish: str
    prompt_logprobs: torch.Tensor  # [prompt_len, vocab]: position i predicts token i + 1


def decode(lm: LoadedModel, prompt_ids: list[int], max_tokens: int, temperature: float = 0.0, seed: int = 0,
           top: int = 0, stop: tuple[str, ...] | list[str] = ()) -> Decoded:
    """Continue `prompt_ids` by up to `max_tokens` tokens (stopping at EOS or any `stop` string)."""
    gen = torch.Generator().manual_seed(seed)
    eos = lm.tokenizer.eos_token_id
    ids: list[int] = []
    lps: list[float] = []
    tops: list[list[tuple[int, float]]] = []
    finish = "length"
    with torch.inference_mode():
        step = lm.model(input_ids=torch.tensor([prompt_ids], device=lm.device), use_cache=True)
        prompt_logprobs = torch.log_softmax(step.logits[0].float(), -1)
        for _ in range(max_tokens):
            logp = torch.log_softmax(step.logits[0, -1].float(), -1)  # [vocab]
            if temperature > 0:
                token = int(torch.multinomial(torch.softmax(logp / temperature, -1).cpu(), 1, generator=gen))
            else:
                token = int(logp.argmax())
            ids.append(token)
            lps.append(float(logp[token]))
            if top > 0:
                vals, idx = logp.topk(top)
                tops.append([(int(i), float(v)) for v, i in zip(vals, idx)])
            else:
                tops.append([])
            if token == eos or (stop and any(s in lm.tokenizer.decode(ids) for s in stop)):
                finish = "stop"
                break
            step = lm.model(input_ids=torch.tensor([[token]], device=lm.device),
                            past_key_values=step.past_key_values, use_cache=True)
    return Decoded(ids, lps, tops, finish, prompt_logprobs)


def generate_text(lm: LoadedModel, text: str, add_special_tokens: bool, max_tokens: int,
                  stop: tuple[str, ...] = (), temperature: float = 0.0, seed: int = 0) -> str:
    """The continuation of `text` as a string (special tokens dropped); greedy unless `temperature` > 0."""
    ids = lm.tokenizer(text, add_special_tokens=add_special_tokens).input_ids
    out = decode(lm, ids, max_tokens, temperature=temperature, seed=seed, stop=stop)
    return lm.tokenizer.decode(out.ids, skip_special_tokens=True)
