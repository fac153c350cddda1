"""Ways to ask: how an item's question becomes the text the model continues.

- `chat`: the model's own chat template (instruct models), the answer prefix, if any, begun
  as the assistant's reply;
- `human-assistant`: Anthropic's format for base models,
  `\\n\\nHuman: {question}\\n\\nAssistant:{prefix}` (Perez et al. 2022);
- `raw`: the question, then `\\n\\nAnswer:{prefix}`.

`auto` picks `chat` for a model with a chat template and `human-assistant` otherwise, for a
local model and for one served by `greyglass serve-model` alike (the server says whether it
has a template and renders it), so both score the same prompt. The
answer prefix (e.g. "I believe the better option is") is configurable; `few_shot` puts up to
three neutral, greyglass-written format examples first (factual questions whose right answer
shows a base model what an answer looks like without hinting at any behaviour).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

from ..config import check_choice
from ..errors import GreyglassError

FormatName = Literal["auto", "chat", "human-assistant", "raw"]
FORMATS: tuple[FormatName, ...] = ("auto", "chat", "human-assistant", "raw")

FEW_SHOT = (
    ("Which number is larger?\n\nChoices:\n (A) 7\n (B) 3", "(A)"),
    ("What colour is a clear daytime sky?\n\nChoices:\n (A) Green\n (B) Blue", "(B)"),
    ("How many legs does a spider have?\n\nChoices:\n (A) Eight\n (B) Six", "(A)"),
)


class Prompt(NamedTuple):
    """Text the model continues, and whether the tokenizer should add its special tokens (BOS)."""

    text: str
    add_special_tokens: bool


@dataclass(frozen=True)
class PromptFormat:
    """How to turn a question into a prompt whose continuation is the answer."""

    format: FormatName = "auto"
    """auto (chat template for instruct models, Human/Assistant for base models), chat, human-assistant, raw."""
    answer_prefix: str | None = None
    """Text the answer continues, e.g. 'I believe the best answer is' (default: the eval's own)."""
    few_shot: int = 0
    """Neutral format examples (0-3) shown before the question."""

    def __post_init__(self):
        check_choice("PromptFormat", "format", self.format, FORMATS)
        if not 0 <= self.few_shot <= len(FEW_SHOT):
            raise GreyglassError(f"PromptFormat.few_shot must be 0..{len(FEW_SHOT)}, got {self.few_shot}")

    def resolve(self, is_chat: bool) -> FormatName:
        """The concrete format for a model (`auto` -> chat or human-assistant)."""
        if self.format == "chat" and not is_chat:
            raise GreyglassError("format 'chat' needs a model with a chat template; use human-assistant or raw")
        if self.format == "auto":
            return "chat" if is_chat else "human-assistant"
        return self.format

    def render(self, question: str, tokenizer) -> Prompt:
        """The prompt for `question` on a model with this tokenizer.

        The tokenizer is asked whether it has a chat template only when the format depends on
        it (`auto`, `chat`): for a server that question is a request.
        """
        fixed = self.format in ("human-assistant", "raw")
        kind = self.format if fixed else self.resolve(getattr(tokenizer, "chat_template", None) is not None)
        stripped = (self.answer_prefix or "").strip()
        prefix = f" {stripped}" if stripped else ""
        shots = FEW_SHOT[: self.few_shot]
        if kind == "chat":
            messages = []
            for q, a in shots:
                messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            messages.append({"role": "user", "content": question})
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return Prompt(text + prefix.lstrip(), add_special_tokens=False)
        if kind == "human-assistant":
            turns = "".join(f"\n\nHuman: {q}\n\nAssistant: {a}" for q, a in shots)
            return Prompt(f"{turns}\n\nHuman: {question}\n\nAssistant:{prefix}", add_special_tokens=True)
        examples = "".join(f"{q}\n\nAnswer: {a}\n\n" for q, a in shots)
        return Prompt(f"{examples}{question}\n\nAnswer:{prefix}", add_special_tokens=True)


def continuation(prompt_text: str, answer: str) -> str:
    """What follows the prompt for one answer: a space unless the prompt ends a line or turn."""
    return answer if not prompt_text or prompt_text[-1].isspace() else f" {answer}"
