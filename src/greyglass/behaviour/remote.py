"""The HTTP backend: score answers with any OpenAI-compatible completions server.

Each answer is one request, `prompt + answer` with `echo=true, max_tokens=0, logprobs=0`
(as lm-evaluation-harness does with vLLM or llama.cpp servers): the server returns every
prompt token's log-probability and its text offset, and the answer's score is the sum over
the tokens at or after the answer's first character. A server that says its model has a chat
template (`greyglass serve-model` does, in `/v1/models`) renders it: the prompt formats ask
it through `ServerTemplate`, so `--format auto` and `chat` give a served chat model exactly
the prompt a local run gives it, sent with `add_special_tokens: false` as the local path
tokenises it. Other servers get the Human/Assistant format. Servers with only a chat API
(`api="chat"`) are asked the question `samples` times instead, and the answer each reply
gives is parsed.

Requests go through `greyglass.http_client.JsonClient` (the API key from `OPENAI_API_KEY`,
a timeout, retries with exponential backoff on connection errors, timeouts, 429 and 5xx), and
at most `concurrency` are in flight. Every response is appended to a
JSONL cache keyed by the request's sha256, so a rerun (or a resumed run after a crash)
never pays for a request twice.
"""

from __future__ import annotations

import json
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import GreyglassError
from ..fingerprint import json_sha256
from ..http_client import HttpError, JsonClient
from .formats import Prompt, continuation
from .config import HttpConfig
from .local import AnswerRequest, AnswerScores


class ServerTemplate:
    """The served model's chat template, as much of a tokenizer as `PromptFormat.render` uses.

    `chat_template` is None unless the server lists the model with `"chat_template": true`
    (asked once, on first use); `apply_chat_template` has the server render the messages.
    """

    def __init__(self, backend: "HttpBackend"):
        self._backend = backend
        self._has_template: bool | None = None

    @property
    def chat_template(self) -> str | None:
        if self._has_template is None:
            self._has_template = self._backend.model_info().get("chat_template") is True
        return "served" if self._has_template else None

    def apply_chat_template(self, messages: list[dict[str, str]], tokenize: bool = False,
                            add_generation_prompt: bool = True) -> str:
        if tokenize or not add_generation_prompt:
            raise GreyglassError("a served chat template only renders text that ends where the reply begins")
        body = {"model": self._backend.cfg.server_model, "messages": messages, "max_tokens": 0, "echo": True}
        return self._backend.post("completions", body)["choices"][0]["text"]


class HttpBackend:
    """Scores answers through `/v1/completions` with echoed prompt log-probabilities."""

    default_batch_size = 8  # requests handed to the pool at once (at most --concurrency in flight)

    def __init__(self, cfg: HttpConfig):
        self.cfg = cfg
        self.http = JsonClient(cfg.url, timeout_s=cfg.timeout_s, retries=cfg.retries, backoff_s=cfg.backoff_s)
        self.sent = 0  # requests that reached the network (not answered from the cache)
        self._lock = threading.Lock()
        self._cache = _read_cache(Path(cfg.cache)) if cfg.cache else {}
        # chat-only servers get the question as a user message, templated by the server itself
        self.tokenizer = ServerTemplate(self) if cfg.api == "completions" else None

    def model_info(self) -> dict[str, Any]:
        """The server's `/models` entry for `server_model` (or its only model); {} if there is none."""
        try:
            listed = [m for m in self.post("models", None).get("data") or [] if isinstance(m, dict)]
        except HttpError as e:
            if e.status in (404, 405):  # a server without /models: nothing to learn
                return {}
            raise
        named = [m for m in listed if m.get("id") == self.cfg.server_model] or (listed if len(listed) == 1 else [])
        return named[0] if named else {}

    def provenance(self) -> dict[str, Any]:
        """What answers, for config.json: the server, its model and the settings."""
        model = {"name": f"{self.cfg.server_model} at {self.cfg.url}", "spec": self.cfg.url}
        return {"backend": "http", "model": model, **asdict(self.cfg)}

    def score(self, requests: list[AnswerRequest]) -> list[AnswerScores]:
        if self.cfg.api == "chat":
            return self._score_by_sampling(requests)
        jobs = [(r.prompt, continuation(r.prompt.text, a)) for r in requests for a in r.answers]
        with ThreadPoolExecutor(self.cfg.concurrency) as pool:
            sums = list(pool.map(lambda job: self._answer_logprob(*job), jobs))
        out, i = [], 0
        for r in requests:
            out.append(AnswerScores(sums[i : i + len(r.answers)]))
            i += len(r.answers)
        return out

    def _score_by_sampling(self, requests: list[AnswerRequest]) -> list[AnswerScores]:
        """Chat-only servers: sample replies (seeds 0..samples-1), parse the answer each gives.

        An answer's score is log((count + 0.5) / (samples + 0.5 * answers)), so one never
        given is unlikely but not impossible, and `p_match` stays a probability.
        """
        jobs = [(r, seed) for r in requests for seed in range(self.cfg.samples)]

        def reply(job):
            r, seed = job
            body = {"model": self.cfg.server_model, "messages": [{"role": "user", "content": r.prompt.text}],
                    "max_tokens": 16, "temperature": 1.0, "seed": seed}
            return self.post("chat/completions", body)["choices"][0]["message"]["content"] or ""

        with ThreadPoolExecutor(self.cfg.concurrency) as pool:
            replies = list(pool.map(reply, jobs))
        out = []
        for i, r in enumerate(requests):
            given = [parse_choice(text, r.answers) for text in replies[i * self.cfg.samples : (i + 1) * self.cfg.samples]]
            k = len(r.answers)
            out.append(AnswerScores([math.log((given.count(a) + 0.5) / (self.cfg.samples + 0.5 * k)) for a in r.answers]))
        return out

    def _answer_logprob(self, prompt: Prompt, answer: str) -> float:
        payload = {"model": self.cfg.server_model, "prompt": prompt.text + answer, "max_tokens": 0,
                   "echo": True, "logprobs": 0, "temperature": 0}
        if not prompt.add_special_tokens:  # a rendered chat template holds its own BOS; sent only then, so
            payload["add_special_tokens"] = False  # other prompts keep their cache keys and any server takes them
        lp = self.post("completions", payload)["choices"][0]["logprobs"]
        picked = [v for tok, v, off in zip(lp["tokens"], lp["token_logprobs"], lp["text_offset"])
                  if off + len(tok) > len(prompt.text)]
        if not picked or any(v is None for v in picked):
            raise GreyglassError(f"{self.cfg.url}: the server returned no log-probabilities for the answer "
                                 f"{answer!r}; it must support echo=true with logprobs on /completions")
        return float(sum(picked))

    def post(self, endpoint: str, payload: dict[str, Any] | None) -> dict[str, Any]:
        """POST `payload` (None: GET), answered from the cache when it holds the request; the decoded JSON response."""
        key = json_sha256({"url": self.cfg.url, "endpoint": endpoint, **(payload or {"method": "GET"})})
        if key in self._cache:
            return self._cache[key]
        response = self.http.get(endpoint) if payload is None else self.http.post(endpoint, payload)
        with self._lock:
            self._cache[key] = response
            self.sent += 1
            if self.cfg.cache:
                Path(self.cfg.cache).parent.mkdir(parents=True, exist_ok=True)
                with open(self.cfg.cache, "a") as f:
                    f.write(json.dumps({"key": key, "response": response}) + "\n")
        return response


def parse_choice(text: str, answers: tuple[str, ...]) -> str | None:
    """The answer a reply gives: the one written earliest, as "(A)" or "A)"; None if none is."""
    found = []
    for a in answers:
        forms = {a, a.strip("()") + ")"} if a.startswith("(") else {a}
        hits = [text.find(f) for f in forms if f in text]
        if hits:
            found.append((min(hits), a))
    return min(found)[1] if found else None


def _read_cache(path: Path) -> dict[str, Any]:
    """Cached responses by key; a line cut off by a crash is skipped."""
    cache: dict[str, Any] = {}
    if path.exists():
        text = path.read_text()
        if text and not text.endswith("\n"):  # end the cut-off line so the next append starts clean
            with open(path, "a") as f:
                f.write("\n")
        for line in text.splitlines():
            try:
                entry = json.loads(line)
                cache[entry["key"]] = entry["response"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return cache
