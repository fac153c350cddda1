"""The inspect_ai model provider `greyglass/<model>`: any inspect task on a local model, optionally steered,
with a probe reading every answer.

`<model>` is whatever `--model` takes elsewhere (an embedded name such as
`smollm2-135m-instruct`, a Hugging Face folder, a .gguf file). Model args (`-M` on inspect's
command line, `model_args` in Python):

- `steer=DIR`, `coef=0.5`, `layer=L`: add a saved Direction to the residual stream for every
  generation, `coef` typical residual norms long, at its own site or `blocks.L.hook_resid_post`
  (the same steering as `greyglass steer` and `serve-model --steer`, through `ModelServer`);
- `probe=DIR`: after each reply, run the prompt and reply once more and score every reply token
  with the probe at its site; the output's metadata `greyglass.probe` holds the per-token scores
  and their mean, max and last value, so the log holds a probe reading for every answer;
- `dtype`, `device`: as greyglass's `--dtype` and `--device`.

Messages go through `behaviour.formats.PromptFormat` as the evals' prompts do: the model's chat
template, or for a model without one a system text and `\n\nHuman: ...\n\nAssistant:` turns;
`max_tokens` (default 256), `temperature` (default 0: greedy), `seed` and `stop_seqs` are honoured, other settings ignored; tools are not supported. Generation runs in
a worker thread, one request at a time (`max_connections` 1: one model in memory).
"""

from __future__ import annotations

from typing import Any

import anyio
import torch
from inspect_ai.model import ChatCompletionChoice, ChatMessage, ChatMessageAssistant, GenerateConfig, ModelAPI
from inspect_ai.model import ModelOutput, ModelUsage
from inspect_ai.tool import ToolChoice, ToolInfo

from ..behaviour.formats import PromptFormat
from ..directions import Direction
from ..errors import GreyglassError
from ..models.generate import adds_bos, generate_ids
from ..models.hooks import run_to_sites
from ..models.loader import load_model
from ..serve.model_api import ModelServer

DEFAULT_MAX_TOKENS = 256


class GreyglassAPI(ModelAPI):
    """A greyglass LoadedModel behind inspect_ai's ModelAPI."""

    def __init__(self, model_name: str, base_url: str | None = None, api_key: str | None = None,
                 config: GenerateConfig = GenerateConfig(), steer: str | None = None, coef: float = 0.5,
                 layer: int | None = None, probe: str | None = None, dtype: str = "float32", device: str = "cpu",
                 **unknown: Any) -> None:
        super().__init__(model_name=model_name, base_url=base_url, api_key=api_key, config=config)
        if unknown:
            raise GreyglassError(f"greyglass/{model_name}: unknown model args {', '.join(unknown)}; "
                                 "known: steer, coef, layer, probe, dtype, device")
        if layer is not None and steer is None:
            raise GreyglassError("model arg layer needs steer=DIR (a saved direction)")
        self.lm = load_model(model_name, dtype, device)
        site = f"blocks.{int(layer)}.hook_resid_post" if layer is not None else None
        self.server = ModelServer(self.lm, steer=Direction.load(steer) if steer else None, site=site,
                                  coef=float(coef))  # holds the steering hooks until close()
        self.probe = Direction.load(probe) if probe else None
        self.probe_path = probe
        if self.probe is not None:
            self.probe.check_model(self.lm.d_model)

    def close(self) -> None:
        self.server.close()

    def max_tokens(self) -> int | None:
        return DEFAULT_MAX_TOKENS

    def max_connections(self) -> int:
        return 1

    async def generate(self, input: list[ChatMessage], tools: list[ToolInfo], tool_choice: ToolChoice,
                       config: GenerateConfig) -> ModelOutput:
        if tools:
            raise GreyglassError("the greyglass provider does not support tools")
        return await anyio.to_thread.run_sync(self._generate, input, config)

    def _generate(self, input: list[ChatMessage], config: GenerateConfig) -> ModelOutput:
        text = self._prompt(input)
        ids = self.lm.tokenizer(text, add_special_tokens=adds_bos(self.lm, text)).input_ids
        with self.server.lock:
            gen = generate_ids(self.lm, ids, config.max_tokens or DEFAULT_MAX_TOKENS, config.temperature or 0.0,
                               config.seed or 0, 0, tuple(config.stop_seqs or ()))
            reading = self._probe_reading(ids, gen.ids) if self.probe is not None else None
        reply = self.lm.tokenizer.decode(gen.ids, skip_special_tokens=True)
        choice = ChatCompletionChoice(message=ChatMessageAssistant(content=reply, model=self.model_name,
                                                                   source="generate"),
                                      stop_reason="stop" if gen.finish == "stop" else "max_tokens")
        usage = ModelUsage(input_tokens=len(ids), output_tokens=len(gen.ids), total_tokens=len(ids) + len(gen.ids))
        return ModelOutput(model=self.model_name, choices=[choice], usage=usage,
                           metadata={"greyglass": {"steering": self.server.steering, "probe": reading}})

    def _prompt(self, messages: list[ChatMessage]) -> str:
        """The messages as the model's input text, ending where the assistant's reply begins (the evals' format:
        the chat template, or Human/Assistant turns for a model without one)."""
        return PromptFormat().conversation([{"role": m.role, "content": m.text} for m in messages],
                                           self.lm.tokenizer).text

    def _probe_reading(self, prompt_ids: list[int], reply_ids: list[int]) -> dict[str, Any]:
        """The probe's score at every reply token (its activations as the model wrote it, steering included)."""
        site = self.lm.site(self.probe.site).name
        reading: dict[str, Any] = {"path": self.probe_path, "site": site, "kind": self.probe.kind,
                                   "n_tokens": len(reply_ids)}
        if not reply_ids:
            return {**reading, "per_token": [], "mean": None, "max": None, "last": None}
        ids = torch.tensor([prompt_ids + reply_ids], device=self.lm.device)
        acts = run_to_sites(self.lm, ids, [site])[site][0, len(prompt_ids):]  # [reply tokens, d_model]
        scores = self.probe.score(acts.float().cpu())  # [reply tokens]
        return {**reading, "per_token": scores.tolist(), "mean": float(scores.mean()), "max": float(scores.max()),
                "last": float(scores[-1])}
