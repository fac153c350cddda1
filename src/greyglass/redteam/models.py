"""The red model, the target and the judge behind one interface each: a loaded model or an OpenAI-compatible server.

A spec is an embedded model name, a local model folder (anything `load_model` takes), or a URL
starting with http:// or https://, optionally followed by `#name` for the `model` field the server
expects (default "default"). A spec equal to the target's own reuses the loaded target.

- `Writer.complete(prompts, seeds)`: continue each prompt (the red model's numbered list) up to the
  first newline; a server is asked on `/completions` with `stop: ["\\n"]` and the seed.
- `Writer.answer(systems, users, seeds)`: the reply to each user turn after its system prompt (the target);
  a server is asked on `/chat/completions`.
- The judge is an eval backend (`behaviour.local.LocalBackend` or `behaviour.remote.HttpBackend`), so
  yes/no is scored exactly as `greyglass eval` scores answers.

Server responses are cached in the run folder (`HttpBackend`'s JSONL cache), so a resumed run
never asks again what it has already been answered.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from ..behaviour.config import HttpConfig
from ..behaviour.local import LocalBackend
from ..behaviour.remote import HttpBackend
from ..errors import GreyglassError
from ..models.generate import adds_bos, generate, generate_text, user_prompt
from ..models.lm import LoadedModel
from ..models.loader import load_model


class Writer(Protocol):
    """Something that writes text: the red model or the target."""

    lm: LoadedModel | None
    """The loaded model, or None for a server (no activations to read)."""

    def complete(self, prompts: Sequence[str], seeds: Sequence[int], temperature: float,
                 max_tokens: int) -> list[str]: ...

    def answer(self, systems: Sequence[str | None], users: Sequence[str], seeds: Sequence[int], temperature: float,
               max_tokens: int) -> list[str]: ...

    def provenance(self) -> dict[str, Any]: ...


def is_url(spec: str | None) -> bool:
    return spec is not None and spec.startswith(("http://", "https://"))


def http_config(spec: str, cache: Path, api: str = "completions") -> HttpConfig:
    url, _, name = spec.partition("#")
    return HttpConfig(url=url, server_model=name or "default", cache=str(cache), api=api)  # type: ignore[arg-type]


class LocalWriter:
    """A loaded model: the red model's list continued by sampling, the target's replies in its chat template."""

    def __init__(self, lm: LoadedModel, batch_size: int = 8):
        self.lm, self.batch_size = lm, batch_size

    def provenance(self) -> dict[str, Any]:
        return self.lm.provenance()

    def complete(self, prompts: Sequence[str], seeds: Sequence[int], temperature: float, max_tokens: int) -> list[str]:
        return [first_line(generate_text(self.lm, p, True, max_tokens, stop=("\n",), temperature=temperature, seed=s))
                for p, s in zip(prompts, seeds)]

    def answer(self, systems: Sequence[str | None], users: Sequence[str], seeds: Sequence[int], temperature: float,
               max_tokens: int) -> list[str]:
        prompts = [self.prompt(s, u) for s, u in zip(systems, users)]
        if temperature == 0:  # greedy: one batched generate
            return [a.strip() for a in generate(self.lm, prompts, max_tokens, batch_size=self.batch_size)]
        return [generate_text(self.lm, p, adds_bos(self.lm, p), max_tokens, temperature=temperature, seed=s).strip()
                for p, s in zip(prompts, seeds)]

    def prompt(self, system: str | None, user: str) -> str:
        """The target's prompt: the user turn after the system prompt, ending where the reply begins."""
        return user_prompt(self.lm, user, system)


class HttpWriter:
    """An OpenAI-compatible server: `/completions` for the red model, `/chat/completions` for the target."""

    lm = None

    def __init__(self, backend: HttpBackend):
        self.backend = backend

    def provenance(self) -> dict[str, Any]:
        return self.backend.provenance()["model"]

    def complete(self, prompts: Sequence[str], seeds: Sequence[int], temperature: float, max_tokens: int) -> list[str]:
        return [first_line(self.backend.post("completions", {
            "model": self.backend.cfg.server_model, "prompt": p, "max_tokens": max_tokens, "temperature": temperature,
            "seed": s, "stop": ["\n"]})["choices"][0]["text"]) for p, s in zip(prompts, seeds)]

    def answer(self, systems: Sequence[str | None], users: Sequence[str], seeds: Sequence[int], temperature: float,
               max_tokens: int) -> list[str]:
        out = []
        for system, user, seed in zip(systems, users, seeds):
            messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
            body = {"model": self.backend.cfg.server_model, "messages": messages, "max_tokens": max_tokens,
                    "temperature": temperature, "seed": seed}
            out.append((self.backend.post("chat/completions", body)["choices"][0]["message"]["content"] or "").strip())
        return out


def first_line(text: str) -> str:
    """A list item: the text up to the first newline, stripped."""
    return text.split("\n", 1)[0].strip()


def loaded(spec: str | None, target: LoadedModel | None, what: str) -> LoadedModel:
    """The model `spec` names: the target itself when `spec` is None or names it, else loaded."""
    if spec is None or (target is not None and spec == target.spec):
        if target is None:
            raise GreyglassError(f"the {what} defaults to the target model, but the target is a server; "
                                 f"give --{what} (a model name, folder or URL)")
        return target
    return load_model(spec, dtype=str(target.dtype).removeprefix("torch.") if target else "float32",
                      device=str(target.device) if target else "cpu")


def writer_for(spec: str | None, target: LoadedModel | None, out: Path, what: str, batch_size: int = 8) -> Writer:
    """The red model or target that `spec` names (a server's responses cached in `out`)."""
    if is_url(spec):
        return HttpWriter(HttpBackend(http_config(spec, out / f"{what}_responses.jsonl")))  # type: ignore[arg-type]
    return LocalWriter(loaded(spec, target, what), batch_size)


def judge_for(spec: str | None, target: LoadedModel | None, out: Path, api: str) -> LocalBackend | HttpBackend:
    """The judge as an eval backend (answers 'Yes' and 'No' scored after its question)."""
    if is_url(spec):
        return HttpBackend(http_config(spec, out / "judge_responses.jsonl", api))  # type: ignore[arg-type]
    return LocalBackend(loaded(spec, target, "judge"))
