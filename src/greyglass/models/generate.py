"""Prompts in the model's own format, tokenising them, and batched greedy generation.

One place for what steering, feature steering, organisms and the browser all need: a user
message as the model expects it (its chat template, or the text itself for a base model),
token ids without a doubled BOS, and greedy continuations.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm import tqdm

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
            ids = lm.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, max_time=max_time,
                                    pad_token_id=lm.tokenizer.pad_token_id)
        out += lm.tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return out


def reply(lm: LoadedModel, text: str, max_new_tokens: int = 40, max_time: float | None = None) -> str:
    """The model's greedy reply to `text` sent as the user's turn (a plain continuation for a base model)."""
    return generate(lm, [user_prompt(lm, text)], max_new_tokens, max_time=max_time)[0].strip()
