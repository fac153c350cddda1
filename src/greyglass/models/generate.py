"""Generation: prompts in the model's own format, token ids without a doubled BOS, continuations.

One place for every caller that makes a model write:

- `user_prompt`, `encode`: a user message as the model expects it (its chat template, or the
  text itself for a base model) and token ids without a doubled BOS;
- `generate`, `reply`: batched greedy continuations as text (steering, feature steering,
  organisms, the browser);
- `generate_ids`, `generate_text`: one sequence, greedy or seeded temperature sampling, stop
  strings, each new token's log-prob and top alternatives, and on request the prompt's
  log-probs (`serve-model`, the chain-of-thought and pressure evals).

All of it runs through transformers' `model.generate` with one decoding rule (`_decoding`),
its raw logits (`output_logits`) for the log-probs, and a StoppingCriteria for stop strings.
Two pieces are hand-written because `generate` cannot do them: the stop-string check
(`StopText`: transformers' own matches across the prompt boundary), and the prompt pass
behind the prompt's log-probs (`generate` computes logits only at the last prompt
position): that pass runs every prompt token but the last and hands its KV cache to
`generate`, so no token runs twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
from tqdm import tqdm
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

from .lm import LoadedModel


def user_prompt(lm: LoadedModel, text: str, system: str | None = None) -> str:
    """`text` as the user's turn, ending where the answer begins; a base model gets the text itself."""
    if not lm.is_chat:
        return f"{system}\n\n{text}" if system else text
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    return lm.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def adds_bos(lm: LoadedModel, text: str) -> bool:
    """Whether tokenising `text` should add special tokens: not when a chat template already put BOS in it."""
    bos = lm.tokenizer.bos_token
    return not (bos and text.startswith(bos))


def encode(lm: LoadedModel, texts: Sequence[str], padding_side: str = "right") -> dict[str, torch.Tensor]:
    """A padded batch (`input_ids`, `attention_mask`, each [batch, pos]) on the model's device."""
    enc = lm.tokenizer(list(texts), return_tensors="pt", padding=True,
                       add_special_tokens=all(adds_bos(lm, t) for t in texts), padding_side=padding_side)
    return {k: v.to(lm.device) for k, v in enc.items()}


def _decoding(lm: LoadedModel, max_new_tokens: int, temperature: float = 0.0, **settings) -> GenerationConfig:
    """Greedy, or sampling from softmax(logits / temperature) over the whole vocabulary.

    transformers fills every setting left unset from the checkpoint's generation_config (its
    EOS tokens, for one) and then from its own defaults. Those include top-k 50, and a
    checkpoint may add top-p or min-p: each would truncate the distribution, while
    `temperature` is meant as the only sampling setting (as in the OpenAI API that
    `serve-model` answers), so they are set to values that keep every token.
    """
    sampling = dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else lm.tokenizer.eos_token_id
    return GenerationConfig(max_new_tokens=max_new_tokens, pad_token_id=pad,
                            **(sampling if temperature > 0 else dict(do_sample=False)), **settings)


def generate(
    lm: LoadedModel,
    prompts: Sequence[str],
    max_new_tokens: int = 32,
    batch_size: int = 16,
    progress: bool = False,
    max_time: float | None = None,
) -> list[str]:
    """Greedy continuations of already-formatted prompts (special tokens removed).

    `max_time` bounds each batch's generation in seconds (for interactive use).
    """
    out: list[str] = []
    for start in tqdm(range(0, len(prompts), batch_size), desc="generate", disable=not progress):
        enc = encode(lm, prompts[start : start + batch_size], padding_side="left")
        with torch.inference_mode():
            ids = lm.model.generate(**enc, generation_config=_decoding(lm, max_new_tokens), max_time=max_time)
        out += lm.tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return out


def reply(lm: LoadedModel, text: str, max_new_tokens: int = 40, max_time: float | None = None) -> str:
    """The model's greedy reply to `text` sent as the user's turn (a plain continuation for a base model)."""
    return generate(lm, [user_prompt(lm, text)], max_new_tokens, max_time=max_time)[0].strip()


class Decoded(NamedTuple):
    """New token ids, their log-probs and top alternatives, why generation stopped, and the prompt's log-probs."""

    ids: list[int]
    logprobs: list[float]
    top: list[list[tuple[int, float]]]
    finish: Literal["stop", "length"]
    prompt_logprobs: torch.Tensor | None  # [prompt_len, vocab]: position i predicts token i + 1; None unless asked


def generate_ids(lm: LoadedModel, prompt_ids: list[int], max_tokens: int, temperature: float = 0.0, seed: int = 0,
                 top: int = 0, stop: Sequence[str] = (), prompt_logprobs: bool = False) -> Decoded:
    """Continue `prompt_ids` by up to `max_tokens` tokens, with each new token's log-prob and `top` alternatives.

    Log-probs are of the model's own distribution (before temperature); they come from
    `generate`'s logits of every step, which take new tokens x vocabulary floats until
    returned. With `prompt_logprobs`, also those of every prompt token after the first.
    """
    ids = torch.tensor([prompt_ids], device=lm.device)
    before, cache = _prompt_pass(lm, ids) if prompt_logprobs and len(prompt_ids) > 1 else (None, None)
    # max_tokens 0 still generates one token: its logits are the prompt's last row
    out = _generate_one(lm, ids, max(max_tokens, 1), temperature, seed, stop, cache, output_logits=True)
    logps = torch.log_softmax(torch.cat(out.logits).float(), -1)  # [new, vocab]
    new = out.sequences[0, len(prompt_ids) :][:max_tokens].tolist()
    chosen = [float(logps[i, t]) for i, t in enumerate(new)]
    alts = [_top(logps[i], top) for i in range(len(new))]
    if prompt_logprobs:
        before = logps[:1] if before is None else torch.cat([before, logps[:1]])
    return Decoded(new, chosen, alts, _finish(lm, new, max_tokens, stop), before)


def generate_text(lm: LoadedModel, text: str, add_special_tokens: bool, max_tokens: int,
                  stop: Sequence[str] = (), temperature: float = 0.0, seed: int = 0) -> str:
    """The continuation of `text` as a string (special tokens dropped); greedy unless `temperature` > 0."""
    ids = torch.tensor([lm.tokenizer(text, add_special_tokens=add_special_tokens).input_ids], device=lm.device)
    out = _generate_one(lm, ids, max(max_tokens, 1), temperature, seed, stop)
    return lm.tokenizer.decode(out.sequences[0, ids.shape[1] :][:max_tokens], skip_special_tokens=True)


def _generate_one(lm: LoadedModel, ids: torch.Tensor, max_tokens: int, temperature: float, seed: int,
                  stop: Sequence[str], cache=None, **outputs: bool):
    """`model.generate` on one sequence [1, pos], stopping at EOS or once the new text holds a `stop` string.

    A sample depends only on `seed`: the global random state is left as it was.
    """
    config = _decoding(lm, max_tokens, temperature, return_dict_in_generate=True, **outputs)
    criteria = StoppingCriteriaList([StopText(lm.tokenizer, stop, ids.shape[1])] if stop else [])
    with torch.inference_mode(), torch.random.fork_rng(devices=[lm.device] if lm.device.type == "cuda" else []):
        torch.manual_seed(seed)
        return lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config,
                                 stopping_criteria=criteria, cache=cache)


class StopText(StoppingCriteria):
    """Stops one sequence once the text generated after the prompt holds any of `stop`.

    transformers' own `stop_strings` cannot be used: they match the end of the whole sequence,
    prompt included, so a prompt ending in "\n" would stop on a first "\n" for the stop string
    "\n\n"; the OpenAI API (and every caller here) means the generated text. Only the newest
    tokens are decoded, enough to hold the longest stop string (a character is at most 4 byte
    tokens, and one token more keeps the leading space a window's first token may lose), so
    each check costs the same however long the text grows; the match itself ends in the newest
    token, since every earlier step was checked.
    """

    def __init__(self, tokenizer, stop: Sequence[str], prompt_len: int):
        self.tokenizer, self.stop, self.start = tokenizer, tuple(stop), prompt_len
        self.window = 4 * max(len(s) for s in self.stop) + 2

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        tail = self.tokenizer.decode(input_ids[0, max(self.start, input_ids.shape[1] - self.window) :])
        return torch.full((input_ids.shape[0],), any(s in tail for s in self.stop), device=input_ids.device)


def _prompt_pass(lm: LoadedModel, ids: torch.Tensor):
    """Log-probs predicting prompt tokens 1..n-1 and the KV cache of tokens 0..n-2, for `generate` to go on from."""
    with torch.inference_mode():
        out = lm.model(input_ids=ids[:, :-1], use_cache=True)
    return torch.log_softmax(out.logits[0].float(), -1), out.cache


def _top(logp: torch.Tensor, k: int) -> list[tuple[int, float]]:
    if k <= 0:
        return []
    vals, idx = logp.topk(k)
    return [(int(i), float(v)) for v, i in zip(vals, idx)]


def _finish(lm: LoadedModel, new: list[int], max_tokens: int, stop: Sequence[str]) -> Literal["stop", "length"]:
    """'stop' when EOS or a stop string ended the text (even on its last allowed token), else 'length'."""
    if len(new) < max_tokens:
        return "stop"
    eos = lm.model.generation_config.eos_token_id
    eos = {lm.tokenizer.eos_token_id} if eos is None else set(eos if isinstance(eos, list) else [eos])
    if new and (new[-1] in eos or any(s in lm.tokenizer.decode(new) for s in stop)):
        return "stop"
    return "length"
