"""`serve-model` and the HTTP backend, for real over loopback, on a tiny model."""

import asyncio
import json
import math
import os
import subprocess
import sys
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse
from starlette.routing import Route

from greyglass import GreyglassError
from greyglass.cli import main
from greyglass.directions import Direction
from greyglass.behaviour.config import EvalConfig, HttpConfig
from greyglass.behaviour.formats import PromptFormat
from greyglass.behaviour.local import AnswerRequest, LocalBackend
from greyglass.behaviour.remote import HttpBackend
from greyglass.behaviour.run import run_eval
from greyglass.models.tiny import tiny_model
from greyglass.report.build import section_for
from greyglass.serve.listen import serving
from greyglass.serve.model_api import ModelServer, create_model_app


@contextmanager
def running(app):
    """`app` on a free loopback port in a thread, its API base in `.url`; stopped when the block ends."""
    with serving(app) as base:
        yield SimpleNamespace(url=f"{base}/v1")


def post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def chat_lm():
    return tiny_model("llama", chat=True)


@pytest.fixture(scope="module")
def served(chat_lm):
    model = ModelServer(chat_lm)
    with running(create_model_app(model)) as server:
        yield server
    model.close()


def test_http_scores_equal_local_scores_and_cache_saves_requests(served, tmp_path):
    lm = tiny_model("llama")  # the same weights as served (seed 0); a base format, as the HTTP backend uses
    fmt = PromptFormat(format="human-assistant", answer_prefix="I think")
    reqs = [AnswerRequest(fmt.render(q, lm.tokenizer), ("(A)", "(B)")) for q in ["Is it?\n (A) yes\n (B) no", "Or not?"]]
    local = LocalBackend(lm).score(reqs)
    cfg = HttpConfig(url=served.url, cache=str(tmp_path / "cache.jsonl"), concurrency=2)
    remote = HttpBackend(cfg)
    scored = remote.score(reqs)
    for a, b in zip(local, scored):
        assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs)) < 1e-4
    assert remote.sent == 4
    again = HttpBackend(cfg)  # a rerun reads the cache and sends nothing
    assert again.score(reqs) == scored and again.sent == 0


def test_http_eval_run_resumes_from_the_response_cache(served, tmp_path):
    cfg = EvalConfig(eval="advanced-ai-risk", datasets=("mwe-human-self-awareness-general-ai",), limit=3,
                     prompt=PromptFormat(format="raw"))
    cache = str(tmp_path / "responses.jsonl")
    first = HttpBackend(HttpConfig(url=served.url, cache=cache))
    res = run_eval(first, cfg, tmp_path / "a", progress=False)
    assert first.sent == 12 and res.all.n == 3  # 3 items x 2 answers x both answer orders
    with open(cache, "a") as f:
        f.write('{"key": "cut off by a cra')
    second = HttpBackend(HttpConfig(url=served.url, cache=cache))
    assert run_eval(second, cfg, tmp_path / "b", progress=False) == res
    assert second.sent == 0
    assert json.loads((tmp_path / "a" / "config.json").read_text())["backend"]["backend"] == "http"


def test_completions_and_chat_endpoints(served, chat_lm):
    out = post(f"{served.url}/completions", {"prompt": "Hello", "max_tokens": 5, "logprobs": 2, "echo": True})
    choice = out["choices"][0]
    lp = choice["logprobs"]
    assert choice["text"].startswith("Hello") and out["object"] == "text_completion"
    # BOS is not part of the text; the first byte's log-prob is conditioned on it
    assert lp["tokens"][:5] == list("Hello") and lp["text_offset"][:5] == [0, 1, 2, 3, 4]
    assert lp["token_logprobs"][0] < 0 and len(lp["tokens"]) == 5 + 5  # 5 prompt bytes, 5 new tokens
    assert all(len(t) == 2 for t in lp["top_logprobs"][5:])
    # greedy decoding: each new token is the most probable one
    assert all(lp["token_logprobs"][i] == max(lp["top_logprobs"][i].values()) for i in range(5, 10))
    chat = post(f"{served.url}/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3,
                                                   "logprobs": True, "top_logprobs": 1, "temperature": 0.7, "seed": 3})
    content = chat["choices"][0]["logprobs"]["content"]
    assert len(content) == 3 and chat["choices"][0]["message"]["role"] == "assistant"
    assert chat == {**post(f"{served.url}/chat/completions", {"messages": [{"role": "user", "content": "Hi"}],
                    "max_tokens": 3, "logprobs": True, "top_logprobs": 1, "temperature": 0.7, "seed": 3}),
                    "id": chat["id"], "created": chat["created"]}  # seeded sampling repeats
    with urllib.request.urlopen(f"{served.url}/models", timeout=10) as r:
        assert json.loads(r.read())["data"][0]["id"] == "tiny-llama"


def test_bad_requests_get_400_with_a_message(served):
    with pytest.raises(GreyglassError, match="HTTP 400: .*'prompt' must be"):
        HttpBackend(HttpConfig(url=served.url, retries=0)).post("completions", {"prompt": 3})
    with pytest.raises(GreyglassError, match="HTTP 404"):
        HttpBackend(HttpConfig(url=served.url, retries=0)).post("embeddings", {})


def test_steered_server_changes_the_logits_by_the_direction(chat_lm):
    direction = Direction(torch.randn(64), "blocks.1.hook_resid_post", "mean_diff")
    body = {"prompt": "Hello there", "max_tokens": 0, "echo": True, "logprobs": 0}
    plain, steered = ModelServer(chat_lm), ModelServer(chat_lm, steer=direction, coef=8.0)
    try:
        with running(create_model_app(steered)) as s:
            a = post(f"{s.url}/completions", body)["choices"][0]["logprobs"]["token_logprobs"]
        assert steered.steering["site"] == "blocks.1.hook_resid_post"
    finally:
        steered.close()
    b = plain.completions(body)["choices"][0]["logprobs"]["token_logprobs"]
    assert max(abs(x - y) for x, y in zip(a, b)) > 1e-3
    assert plain.completions(body)["choices"][0]["logprobs"]["token_logprobs"] == b  # hook removed on close


class Flaky:
    """A stand-in completions server: fails the first `fail` requests with 503 (or stalls them), then echoes.

    It counts requests and the most in flight at once (one event loop: no lock needed).
    """

    def __init__(self, fail: int = 0, stall: float = 0.0):
        self.fail, self.stall, self.seen, self.active, self.peak = fail, stall, 0, 0, 0
        self.app = Starlette(routes=[Route("/v1/completions", self.completions, methods=["POST"])])

    async def completions(self, request: HttpRequest) -> JSONResponse:
        self.seen += 1
        n = self.seen
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(self.stall if n <= self.fail else 0.05)
            body = await request.json()
            status = 503 if n <= self.fail and not self.stall else 200
            return JSONResponse({"choices": [{"logprobs": {"tokens": [body["prompt"]], "token_logprobs": [-1.0],
                                                           "text_offset": [0]}}]}, status)
        finally:
            self.active -= 1


def test_retries_with_backoff_then_succeeds():
    handler = Flaky(fail=2)
    with running(handler.app) as server:
        backend = HttpBackend(HttpConfig(url=server.url, retries=3, backoff_s=0.05, concurrency=1))
        assert backend.post("completions", {"prompt": "x"})["choices"][0]["logprobs"]["token_logprobs"] == [-1.0]
    assert handler.seen == 3


def test_timeouts_give_up_with_a_clear_error():
    handler = Flaky(fail=10, stall=1.0)
    with running(handler.app) as server, pytest.raises(GreyglassError, match=r"no answer after 2 tries .*timed out"):
        HttpBackend(HttpConfig(url=server.url, timeout_s=0.2, retries=1, backoff_s=0.01)).post("completions", {"prompt": "x"})


def test_concurrency_is_limited():
    handler = Flaky()
    reqs = [AnswerRequest(PromptFormat(format="raw").render(f"q{i}", None), ("(A)", "(B)")) for i in range(6)]
    with running(handler.app) as server:
        HttpBackend(HttpConfig(url=server.url, concurrency=3)).score(reqs)
    assert handler.seen == 12 and 2 <= handler.peak <= 3


@pytest.mark.slow
def test_serve_model_command_stops_by_itself(tmp_path, tiny_llama):
    folder = tmp_path / "model"
    tiny_llama.model.save_pretrained(folder)
    tiny_llama.tokenizer.save_pretrained(folder)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "greyglass.cli", "serve-model", "--model", str(folder),
                             "--port", "0", "--max-seconds", "15"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = line.split(" at ")[1].split()[0]
        out = post(f"{url}/completions", {"prompt": "Hi", "max_tokens": 2})
        assert out["choices"][0]["finish_reason"] in ("length", "stop")
        assert proc.wait(timeout=120) == 0
    finally:
        proc.kill()


def test_eval_command_through_the_server(served, tmp_path, capsys, write_lines):
    row = {"question": "Q?\n (A) x\n (B) y", "answer_matching_behavior": " (A)", "answer_not_matching_behavior": " (B)"}
    data = write_lines("mine.jsonl", [json.dumps(row)] * 2)
    out = tmp_path / "run"
    argv = ["eval", "--url", served.url, "--eval", "behaviour", "--datasets", str(data), "--format", "raw",
            "--out", str(out), "--no-progress"]
    # --model names no model at all: the eval must not load one when it asks a server
    assert main(argv + ["--model", str(tmp_path / "no-such-model")]) == 0
    printed = capsys.readouterr().out
    assert section_for(out).summary() in printed and "the behaviour in mine.jsonl" in printed
    # two identical items, two answers, asked in both answer orders; the default cache lives in the run folder
    assert len((out / "responses.jsonl").read_text().splitlines()) == 4
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["server"]["url"] == served.url and config["config"]["server"]["cache"] is None
    assert config["model"]["spec"] == served.url
    assert main(argv[:-3] + ["--format", "chat", "--out", str(tmp_path / "chat")]) == 0  # the server has a template
    with running(create_model_app(ModelServer(tiny_model("llama")))) as base:
        assert main(argv[:2] + [base.url] + argv[3:-3] + ["--format", "chat", "--out", str(tmp_path / "b")]) == 2
    assert "needs a model with a chat template" in capsys.readouterr().err


def test_auto_format_gives_a_served_chat_model_the_local_prompt_and_log_probs(served, chat_lm, tmp_path):
    fmt = PromptFormat(answer_prefix="I think", few_shot=1)  # auto: the chat template, on both paths
    remote = HttpBackend(HttpConfig(url=served.url, cache=str(tmp_path / "cache.jsonl")))
    questions = ["Is it?\n (A) yes\n (B) no", "Or not?"]
    local_prompts = [fmt.render(q, chat_lm.tokenizer) for q in questions]
    assert [fmt.render(q, remote.tokenizer) for q in questions] == local_prompts
    assert "<|assistant|>" in local_prompts[0].text and not local_prompts[0].add_special_tokens
    reqs = [AnswerRequest(p, ("(A)", "(B)")) for p in local_prompts]
    for a, b in zip(LocalBackend(chat_lm).score(reqs), remote.score(reqs)):
        assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs)) < 1e-4
    # a model without a template is asked in the base-model format on both paths
    base = tiny_model("llama")
    base.tokenizer.chat_template = None
    with running(create_model_app(ModelServer(base))) as plain:
        assert fmt.render("Q?", HttpBackend(HttpConfig(url=plain.url)).tokenizer) == fmt.render("Q?", base.tokenizer)


def test_completions_take_chat_messages_and_say_the_model_has_a_template(served, chat_lm):
    messages = [{"role": "user", "content": "Hi"}]
    rendered = chat_lm.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    out = post(f"{served.url}/completions", {"messages": messages, "max_tokens": 0, "echo": True, "logprobs": 0})
    assert out["choices"][0]["text"] == rendered
    assert out["usage"]["prompt_tokens"] == len(chat_lm.tokenizer(rendered, add_special_tokens=False).input_ids)
    plain = post(f"{served.url}/completions", {"prompt": rendered, "max_tokens": 0, "echo": True, "logprobs": 0,
                                               "add_special_tokens": False})
    assert plain["choices"][0]["logprobs"] == out["choices"][0]["logprobs"]
    with urllib.request.urlopen(f"{served.url}/models", timeout=10) as r:
        assert json.loads(r.read())["data"][0]["chat_template"] is True
    for body, words in [({"messages": messages, "prompt": "x"}, "not both"),
                        ({"prompt": "x", "add_special_tokens": "no"}, "true or false")]:
        with pytest.raises(GreyglassError, match=words):
            HttpBackend(HttpConfig(url=served.url, retries=0)).post("completions", body)


def test_parse_choice():
    from greyglass.behaviour.remote import parse_choice

    assert parse_choice("I pick (B), not (A)", ("(A)", "(B)")) == "(B)"
    assert parse_choice("A) is right", ("(A)", "(B)")) == "(A)"
    assert parse_choice("no idea", ("(A)", "(B)")) is None


def test_chat_only_servers_are_scored_by_sampling(served, tmp_path):
    cfg = HttpConfig(url=served.url, api="chat", samples=4, cache=str(tmp_path / "c.jsonl"))
    reqs = [AnswerRequest(PromptFormat(format="raw").render("Q?\n (A) x\n (B) y", None), ("(A)", "(B)"))]
    backend = HttpBackend(cfg)
    (scored,) = backend.score(reqs)
    assert backend.sent == 4 and sum(math.exp(v) for v in scored.logprobs) <= 1 + 1e-9
    # a random tiny model gives neither letter: both get the smoothed share of no votes
    assert scored.logprobs[0] == pytest.approx(math.log(0.5 / 5))
    again = HttpBackend(cfg)
    assert again.score(reqs) == [scored] and again.sent == 0
    with pytest.raises(GreyglassError, match="HttpConfig.api"):
        HttpConfig(url=served.url, api="grpc")
