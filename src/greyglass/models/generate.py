"""Prompts in the model's own format, and batched greedy generation.

Instruct models get their chat template (with the generation prompt); base models get the
`Human: ...\n\nAssistant:` format Anthropic's evals used.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm import tqdm

from .lm import LoadedModel


def chat_prompt(lm: LoadedModel, user: str, system: str | None = None) -> str:
    """`user` as a prompt that ends where the model's answer begins."""
    if not lm.is_chat:
        head = f"{system}\n\n" if system else ""
        return f"{head}Human: {user}\n\nAssistant:"
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    return lm.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def encode(lm: LoadedModel, texts: Sequence[str], padding_side: str = "right") -> dict[str, torch.Tensor]:
    """Tokenise a batch, adding BOS only where a chat template has not put it in the text already."""
    tok = lm.tokenizer
    has_bos = bool(tok.bos_token) and all(t.startswith(tok.bos_token) for t in texts)
    enc = tok(list(texts), return_tensors="pt", padding=True, add_special_tokens=not has_bos,
              padding_side=padding_side)
    return {k: v.to(lm.device) for k, v in enc.items()}


def last_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token of each right-padded row.  [batch]"""
    return attention_mask.sum(dim=1) - 1


def generate(
    lm: LoadedModel,
    prompts: Sequence[str],
    max_new_tokens: int = 32,
    batch_size: int = 16,
    progress: bool = False,
) -> list[str]:
    """Greedy continuations of already-formatted prompts (special tokens removed)."""
    out: list[str] = []
    for start in tqdm(range(0, len(prompts), batch_size), desc="generate", disable=not progress):
        enc = encode(lm, prompts[start : start + batch_size], padding_side="left")
        with torch.inference_mode():
            ids = lm.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=lm.tokenizer.pad_token_id)
        new = ids[:, enc["input_ids"].shape[1] :]
        out += lm.tokenizer.batch_decode(new, skip_special_tokens=True)
    return out
