"""Ways to ask: how an item's question becomes the text the model continues.

- `chat`: the model's own chat template (instruct models), the answer prefix, if any, begun
  as the assistant's reply;
- `human-assistant`: Anthropic's format for base models,
  `\\n\\nHuman: {question}\\n\\nAssistant:{prefix}` (Perez et al. 2022);
- `raw`: the question, then `\\n\\nAnswer:{prefix}`.

A prompt is rendered from a conversation (`PromptFormat.conversation`: an optional system
message, then user and assistant turns, ending with the user's): an eval's question is one
user turn, and the inspect_ai provider renders inspect's messages the same way, so a base
model sees the same Human/Assistant text from both.

`auto` picks `chat` for a model with a chat template and `human-assistant` otherwise, for a
local model and for one served by `greyglass serve-model` alike (the server says whether it
has a template and renders it), so both score the same prompt. The
answer prefix (e.g. "I believe the better option is") is configurable; `few_shot` puts up to
three neutral, greyglass-written format examples first (factual questions whose right answer
shows a base model what an answer looks like without hinting at any behaviour).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

from ..config import check_choice
from ..errors import GreyglassError

FormatName = Literal["auto", "chat", "human-assistant", "raw"]
FORMATS: tuple[FormatName, ...] = ("auto", "chat", "human-assistant", "raw")
Message = Mapping[str, str]
"""One turn of a conversation: {"role": "system" | "user" | "assistant", "content": text}."""

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
        """The prompt for `question` on a model with this tokenizer: a conversation of one user turn."""
        return self.conversation([{"role": "user", "content": question}], tokenizer)

    def conversation(self, messages: Sequence[Message], tokenizer) -> Prompt:
        """The prompt for a conversation (role/content messages: system first if any, then user and
        assistant turns), ending where the assistant's next reply (after the answer prefix) begins.

        The tokenizer is asked whether it has a chat template only when the format depends on
        it (`auto`, `chat`): for a server that question is a request.
        """
        fixed = self.format in ("human-assistant", "raw")
        kind = self.format if fixed else self.resolve(getattr(tokenizer, "chat_template", None) is not None)
        stripped = (self.answer_prefix or "").strip()
        prefix = f" {stripped}" if stripped else ""
        system = [m["content"] for m in messages[:1] if m.get("role") == "system"]
        turns = [*_shots(self.few_shot), *_turns(messages, first=len(system))]
        if kind == "chat":
            chat = [{"role": "system", "content": s} for s in system] + turns
            text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
            return Prompt(text + prefix.lstrip(), add_special_tokens=False)
        head = "".join(system)
        if kind == "human-assistant":  # each turn starts "\n\n", so a system text needs no separator of its own
            said = "".join(f"\n\n{_SPEAKER[t['role']]}: {t['content']}" for t in turns)
            return Prompt(f"{head}{said}\n\nAssistant:{prefix}", add_special_tokens=True)
        said = "".join(f"{t['content']}\n\n" if t["role"] == "user" else f"Answer: {t['content']}\n\n" for t in turns)
        lead = f"{head}\n\n" if head else ""
        return Prompt(f"{lead}{said}Answer:{prefix}", add_special_tokens=True)


_SPEAKER = {"user": "Human", "assistant": "Assistant"}


def _shots(n: int) -> list[Message]:
    """The first `n` format examples as user and assistant turns."""
    return [{"role": role, "content": text} for q, a in FEW_SHOT[:n]
            for role, text in (("user", q), ("assistant", a))]


def _turns(messages: Sequence[Message], first: int) -> list[Message]:
    """The user and assistant turns of a conversation from message `first` on, ending with the user's;
    anything else is refused."""
    for i, m in enumerate(messages[first:], start=first):
        if m.get("role") not in _SPEAKER or not isinstance(m.get("content"), str):
            raise GreyglassError(f"message {i}: a conversation holds a system message first, then user and assistant "
                                 f"messages with text content, not role {m.get('role')!r}")
    if len(messages) <= first or messages[-1]["role"] != "user":
        raise GreyglassError("a conversation to answer must end with a user message")
    return [{"role": m["role"], "content": m["content"]} for m in messages[first:]]


def continuation(prompt_text: str, answer: str) -> str:
    """What follows the prompt for one answer: a space unless the prompt ends a line or turn."""
    return answer if not prompt_text or prompt_text[-1].isspace() else f" {answer}"
