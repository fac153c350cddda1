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

`create_model_app` puts it behind Starlette (served by uvicorn through `serve.listen`, as the
browser is). Every request it cannot answer gets a JSON error body, `{"error": {"message",
"type"}}`: a body that is not a JSON object, a field of the wrong type or out of range (400),
a prompt whose tokens and `max_tokens` together exceed the model's context (400), an unknown route
(404) or method (405), a body over 1 MB (413). The model work of a request
runs in Starlette's thread pool, one forward at a time (`ModelServer.lock`), so the server
keeps accepting requests while the model works, and keeps serving after any error.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, NamedTuple

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..directions import Direction
from ..models.generate import Decoded, generate_ids
from ..models.lm import LoadedModel
from ..steer.apply import steering

MAX_BODY_BYTES = 1_000_000
MAX_TOKENS = 4096
MAX_TOP_LOGPROBS = 20


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
        _check_fields(body, COMPLETION_FIELDS)
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
        special = body.get("add_special_tokens") is not False  # absent or null: true
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
        _check_fields(body, CHAT_FIELDS)
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
        # Past its context a model with learned positions fails (IndexError) and any other one runs
        # attention over the whole prompt: 100 KB of text took 8 minutes on a 4-layer model.
        context = self.lm.context
        if context is not None and len(prompt_ids) + opts["max_tokens"] > context:
            raise BadRequest(f"the prompt is {len(prompt_ids):,} tokens and max_tokens is {opts['max_tokens']:,}, "
                             f"together over the model's context of {context:,} tokens; shorten the prompt or "
                             "lower max_tokens")
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


class Field(NamedTuple):
    """A request field: the test its value must pass, and what to call such a value in an error."""

    accepts: Callable[[Any], bool]
    must_be: str


def _whole(lo: int, hi: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _temperature(v: Any) -> bool:
    # below 0.001 the scaled float32 log-probs overflow to -inf and sampling has nothing to draw from
    return isinstance(v, (int, float)) and not isinstance(v, bool) and (v == 0 or 1e-3 <= v <= 100)


def _stop(v: Any) -> bool:
    return isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v))


def _boolean(v: Any) -> bool:
    return isinstance(v, bool)


_TRUE_OR_FALSE = Field(_boolean, "true or false")
_TOP = Field(_whole(0, MAX_TOP_LOGPROBS), f"a whole number from 0 to {MAX_TOP_LOGPROBS}")
_SAMPLING = {
    "max_tokens": Field(_whole(0, MAX_TOKENS), f"a whole number from 0 to {MAX_TOKENS}"),
    "temperature": Field(_temperature, "0 (greedy) or a number from 0.001 to 100"),
    "seed": Field(_whole(0, 2**63 - 1), "a whole number >= 0"),
    "stop": Field(_stop, "a string or a list of strings"),
}
COMPLETION_FIELDS = {**_SAMPLING, "logprobs": _TOP, "echo": _TRUE_OR_FALSE, "add_special_tokens": _TRUE_OR_FALSE}
CHAT_FIELDS = {**_SAMPLING, "logprobs": _TRUE_OR_FALSE, "top_logprobs": _TOP}


def _check_fields(body: dict[str, Any], fields: dict[str, Field]) -> None:
    """BadRequest naming the first field whose value is of the wrong type or out of range (null means unset)."""
    for name, field in fields.items():
        value = body.get(name)
        if value is not None and not field.accepts(value):
            raise BadRequest(f"'{name}' must be {field.must_be}, got {json.dumps(value)[:60]}")


def _options(body: dict[str, Any]) -> dict[str, Any]:
    """The sampling options of a checked body, with their defaults."""
    stop = body.get("stop") or []
    max_tokens = body.get("max_tokens")
    return {"max_tokens": 16 if max_tokens is None else max_tokens, "temperature": float(body.get("temperature") or 0.0),
            "seed": body.get("seed") or 0, "stop": [stop] if isinstance(stop, str) else stop}


def create_model_app(model: ModelServer, max_body_bytes: int = MAX_BODY_BYTES) -> Starlette:
    """The Starlette app answering OpenAI-style requests with `model` (see the module docstring)."""

    async def models(request: Request) -> Response:
        return _json(200, model.models())

    def answering(route: Callable[[dict[str, Any]], dict[str, Any]]):
        async def endpoint(request: Request) -> Response:
            body = await _read_object(request, max_body_bytes)
            return _json(200, await run_in_threadpool(route, body))  # the model's lock makes requests take turns
        return endpoint

    routes = [Route("/v1/models", models, methods=["GET"]), Route("/models", models, methods=["GET"]),
              Route("/v1/completions", answering(model.completions), methods=["POST"]),
              Route("/v1/chat/completions", answering(model.chat), methods=["POST"])]
    known = ", ".join(f"{min(r.methods - {'HEAD'})} {r.path}" for r in routes)

    async def on_http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code in (404, 405):
            return _error(exc.status_code, f"no route {request.method} {request.url.path}; the routes are {known}")
        return _error(exc.status_code, exc.detail)

    async def on_bad_request(request: Request, exc: BadRequest) -> Response:
        return _error(400, str(exc))

    async def on_crash(request: Request, exc: Exception) -> Response:  # a bug or out-of-memory: say so, keep serving
        return _error(500, f"{type(exc).__name__}: {exc}", "server_error")

    return Starlette(routes=routes, exception_handlers={HTTPException: on_http_error, BadRequest: on_bad_request,
                                                         Exception: on_crash})


async def _read_object(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object (empty: {}); 413 past `limit` bytes, declared or streamed."""
    too_big = f"the request body is over the limit of {limit:,} bytes"
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, too_big)
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise HTTPException(413, too_big)
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, RecursionError) as e:  # JSONDecodeError, bytes that are not UTF-8, nesting too deep
        raise BadRequest(f"the request body is not valid JSON ({str(e)[:100]})") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def _json(status: int, obj: dict[str, Any]) -> Response:
    # json.dumps, not JSONResponse: a log-prob of -inf is written as -Infinity (as Python clients read it), not a crash
    return Response(json.dumps(obj), status_code=status, media_type="application/json")


def _error(status: int, message: str, kind: str = "invalid_request_error") -> Response:
    """The OpenAI error body."""
    return _json(status, {"error": {"message": message, "type": kind}})
