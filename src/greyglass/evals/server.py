"""`greyglass serve-model`: an OpenAI-compatible HTTP server for a local model, optionally steered.

Endpoints (the subset evaluation harnesses use):

- `GET /v1/models`: each model says whether it has a chat template (`"chat_template": true`);
- `POST /v1/completions`: `prompt` (a string or list), `max_tokens` (16), `temperature` (0 is
  greedy), `seed`, `stop`, `logprobs` (number of top alternatives per token), `echo`
  (include the prompt and its tokens' log-probabilities: how harnesses score answers),
  `add_special_tokens` (default true, as in vLLM: false when the prompt already holds them);
  or, instead of `prompt`, `messages`: rendered through the chat template with the
  assistant's turn begun, and continued (with `echo`, the response text starts with the
  rendered prompt). `greyglass eval --url` uses both to give a chat model the same prompt
  as a local run: the rendered template, then the answer;
- `POST /v1/chat/completions`: `messages` through the model's chat template, `max_tokens`,
  `temperature`, `seed`, `stop`, `logprobs` (bool), `top_logprobs`.

With a steering `Direction`, `greyglass.steer.steering` adds it at its site (or at
`resid_post` of `--layer`) for every request, with `coef` in units of the site's typical
residual norm exactly as `greyglass steer` does, so any harness evaluates the steered model.
The server listens on 127.0.0.1 by default; requests are served by threads and the model
runs one request at a time.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..directions import Direction
from ..models import LoadedModel
from ..models.generate import Decoded, generate_ids
from ..steer.apply import steering


class BadRequest(Exception):
    """A client error: answered with HTTP 400 and the message."""


class ModelServer:
    """Turns OpenAI-style request bodies into responses with one loaded model."""

    def __init__(self, lm: LoadedModel, name: str | None = None, steer: Direction | None = None,
                 site: str | None = None, coef: float = 0.0):
        self.lm, self.name = lm, name or lm.name
        self.lock = threading.Lock()
        self.steering = None
        if steer is not None:
            steer.check_model(lm.d_model)
            self.steering = {"site": lm.site(site or steer.site).name, "coef": coef, "kind": steer.kind}
        self._stack = ExitStack()
        if steer is not None:
            self._stack.enter_context(steering(lm, steer, coef, [self.steering["site"]]))

    def close(self) -> None:
        self._stack.close()

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.name, "object": "model", "owned_by": "greyglass",
                                            "chat_template": self.lm.is_chat, "steering": self.steering}]}

    def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        prompts, special = self._completion_prompts(body)
        opts = _options(body)
        top = body.get("logprobs")
        choices, n_prompt = [], 0
        for i, prompt in enumerate(prompts):
            enc = self.lm.tokenizer(prompt, return_offsets_mapping=True, add_special_tokens=special)
            n_prompt += len(enc.input_ids)
            gen = self._generate(enc.input_ids, opts, top or 0)
            text = self._text(gen.ids)
            logprobs = None
            if top is not None:
                logprobs = self._completion_logprobs(prompt, enc, gen, bool(body.get("echo")))
            choices.append({"index": i, "text": (prompt if body.get("echo") else "") + text,
                            "logprobs": logprobs, "finish_reason": gen.finish})
        return self._envelope("text_completion", choices, n_prompt, sum(len(c["text"]) for c in choices))

    def _completion_prompts(self, body: dict[str, Any]) -> tuple[list[str], bool]:
        """The texts to continue and whether to add special tokens: `prompt` as given, or `messages` rendered."""
        special = body.get("add_special_tokens", True)
        if not isinstance(special, bool):
            raise BadRequest("'add_special_tokens' must be true or false")
        if "messages" in body:
            if "prompt" in body:
                raise BadRequest("give 'prompt' or 'messages', not both")
            return [self._chat_text(body["messages"])], False  # the template holds its own special tokens
        prompts = body.get("prompt")
        prompts = [prompts] if isinstance(prompts, str) else prompts
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise BadRequest("'prompt' must be a string or a list of strings (or give 'messages')")
        return prompts, special

    def _chat_text(self, messages: Any) -> str:
        """`messages` through the model's chat template, ending where the assistant's reply begins."""
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' must be a non-empty list of {role, content}")
        if not self.lm.is_chat:
            raise BadRequest(f"model {self.name} has no chat template; send 'prompt' to /v1/completions")
        try:
            return self.lm.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as e:  # the template's own error, e.g. an unknown role
            raise BadRequest(f"cannot apply the chat template: {e}") from None

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        text = self._chat_text(body.get("messages"))
        ids = self.lm.tokenizer(text, add_special_tokens=False).input_ids
        top = int(body.get("top_logprobs") or 0)
        gen = self._generate(ids, _options(body), top)
        content = None
        if body.get("logprobs"):
            content = [{"token": self._text([t]), "logprob": lp, "top_logprobs": self._alternatives(alts)}
                       for t, lp, alts in zip(gen.ids, gen.logprobs, gen.top)]
        choice = {"index": 0, "message": {"role": "assistant", "content": self._text(gen.ids)},
                  "logprobs": {"content": content} if content is not None else None, "finish_reason": gen.finish}
        return self._envelope("chat.completion", [choice], len(ids), len(gen.ids))

    def _generate(self, prompt_ids: list[int], opts: dict[str, Any], top: int) -> Decoded:
        with self.lock:  # one model: requests take turns
            return generate_ids(self.lm, prompt_ids, opts["max_tokens"], opts["temperature"], opts["seed"], top,
                                opts["stop"], prompt_logprobs=True)

    def _completion_logprobs(self, prompt: str, enc, gen: Decoded, echo: bool) -> dict[str, Any]:
        """OpenAI `logprobs` for a completion: tokens, token_logprobs, top_logprobs, text_offset."""
        tokens, lps, tops, offsets = [], [], [], []
        if echo:
            prompt_lp = gen.prompt_logprobs
            for pos, (tid, (start, end)) in enumerate(zip(enc.input_ids, enc.offset_mapping)):
                if end == start:  # special tokens such as BOS are not part of the text
                    continue
                tokens.append(prompt[start:end])
                lps.append(float(prompt_lp[pos - 1, tid]) if pos > 0 else None)
                tops.append(None)
                offsets.append(start)
        at = len(prompt)
        for tid, lp, alts in zip(gen.ids, gen.logprobs, gen.top):
            piece = self._text([tid])
            tokens.append(piece)
            lps.append(lp)
            tops.append({a["token"]: a["logprob"] for a in self._alternatives(alts)})
            offsets.append(at)
            at += len(piece)
        return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}

    def _alternatives(self, alts: list[tuple[int, float]]) -> list[dict[str, Any]]:
        return [{"token": self._text([i]), "logprob": v} for i, v in alts]

    def _text(self, ids: list[int]) -> str:
        return self.lm.tokenizer.decode(ids, skip_special_tokens=True)

    def _envelope(self, obj: str, choices: list[dict[str, Any]], n_prompt: int, n_out: int) -> dict[str, Any]:
        return {"id": f"gg-{uuid.uuid4().hex[:12]}", "object": obj, "created": int(time.time()), "model": self.name,
                "choices": choices, "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_out,
                                              "total_tokens": n_prompt + n_out}}


def _options(body: dict[str, Any]) -> dict[str, Any]:
    try:
        opts = {"max_tokens": int(body.get("max_tokens", 16)), "temperature": float(body.get("temperature", 0.0)),
                "seed": int(body.get("seed") or 0), "stop": body.get("stop") or []}
    except (TypeError, ValueError):
        raise BadRequest("max_tokens, temperature and seed must be numbers") from None
    if isinstance(opts["stop"], str):
        opts["stop"] = [opts["stop"]]
    if not 0 <= opts["max_tokens"] <= 4096 or opts["temperature"] < 0:
        raise BadRequest("max_tokens must be 0..4096 and temperature >= 0")
    return opts


def make_server(model: ModelServer, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A threaded HTTP server answering OpenAI-style requests with `model` (port 0: any free port)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(200, model.models())
            else:
                self._send(404, _error(f"no route GET {self.path}"))

        def do_POST(self):
            routes = {"/v1/completions": model.completions, "/v1/chat/completions": model.chat}
            route = routes.get(self.path.rstrip("/"))
            if route is None:
                return self._send(404, _error(f"no route POST {self.path}; use {', '.join(routes)}"))
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if not isinstance(body, dict):
                    raise BadRequest("the request body must be a JSON object")
                self._send(200, route(body))
            except json.JSONDecodeError as e:
                self._send(400, _error(f"the request body is not valid JSON: {e.msg}"))
            except BadRequest as e:
                self._send(400, _error(str(e)))
            except Exception as e:  # a bug or an out-of-memory must not leave the client waiting
                self._send(500, {"error": {"message": f"{type(e).__name__}: {e}", "type": "server_error"}})

        def _send(self, status: int, obj: dict[str, Any]) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # quiet: one line per request is noise in a terminal
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error"}}
