"""`serve-model`'s HTTP layer on a tiny random model: bad requests get JSON 4xx, never a 500; one forward at a time."""

import json
import threading
import time

import httpx
import pytest
from starlette.testclient import TestClient

from greyglass import GreyglassError
from greyglass.models.tiny import tiny_model
from greyglass.serve.listen import serving
from greyglass.serve.model_api import ModelServer, create_model_app
from greyglass.serve.listen import bind
from greyglass.serve.model_api import MAX_BODY_BYTES

CHAT = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
COMPLETION = {"prompt": "Hi", "max_tokens": 1}


@pytest.fixture(scope="module")
def lm():
    return tiny_model("llama", chat=True)


@pytest.fixture(scope="module")
def client(lm):
    # server exceptions come back as responses, so a 500 fails an assertion here rather than raising
    return TestClient(create_model_app(ModelServer(lm)), raise_server_exceptions=False)


def refused(response, status: int, words: str) -> str:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert words in error["message"] and error["type"] == "invalid_request_error", error
    return error["message"]


@pytest.mark.parametrize("raw, words", [
    (b'{"prompt": "Hi",', "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),  # nested deeper than the JSON reader recurses
    (b'["Hi"]', "must be a JSON object"),
    (b'"Hi"', "must be a JSON object"),
])
def test_a_body_that_is_not_a_json_object_gets_400(client, raw, words):
    for path in ("/v1/completions", "/v1/chat/completions"):
        refused(client.post(path, content=raw), 400, words)


@pytest.mark.parametrize("path, body, words", [
    ("/v1/completions", {"prompt": 3}, "'prompt' must be a string or a list of strings"),
    ("/v1/completions", {"prompt": "Hi", "max_tokens": "5"}, "'max_tokens' must be a whole number from 0 to 4096, got \"5\""),
    ("/v1/completions", {"prompt": "Hi", "max_tokens": 10**6}, "'max_tokens' must be a whole number from 0 to 4096"),
    ("/v1/completions", {"prompt": "Hi", "temperature": "hot"}, "'temperature' must be 0 (greedy) or a number"),
    ("/v1/completions", {"prompt": "Hi", "temperature": 1e-40}, "'temperature' must be 0 (greedy) or a number"),
    ("/v1/completions", {"prompt": "Hi", "seed": 1.5}, "'seed' must be a whole number >= 0"),
    ("/v1/completions", {"prompt": "Hi", "stop": [1]}, "'stop' must be a string or a list of strings"),
    ("/v1/completions", {"prompt": "Hi", "logprobs": True}, "'logprobs' must be a whole number from 0 to 20"),
    ("/v1/completions", {"prompt": "Hi", "logprobs": 10**6}, "'logprobs' must be a whole number from 0 to 20"),
    ("/v1/completions", {"prompt": "Hi", "echo": "yes"}, "'echo' must be true or false"),
    ("/v1/chat/completions", {"messages": "Hi"}, "'messages' must be a non-empty list"),
    ("/v1/chat/completions", {**CHAT, "logprobs": 2}, "'logprobs' must be true or false"),
    ("/v1/chat/completions", {**CHAT, "top_logprobs": "3"}, "'top_logprobs' must be a whole number from 0 to 20"),
])
def test_a_field_of_the_wrong_type_or_range_gets_400_naming_it(client, path, body, words):
    refused(client.post(path, json=body), 400, words)


def test_unknown_routes_and_methods_get_a_json_404_and_405(client):
    message = refused(client.post("/v1/embeddings", json={}), 404, "no route POST /v1/embeddings")
    assert "POST /v1/completions" in message and "GET /v1/models" in message
    refused(client.get("/v1/completions"), 405, "no route GET /v1/completions")
    assert client.get("/v1/models").json()["data"][0]["id"] == "tiny-llama"


def test_a_body_over_the_limit_gets_413_whether_declared_or_streamed(client):
    big = json.dumps({"prompt": "x" * MAX_BODY_BYTES}).encode()
    refused(client.post("/v1/completions", content=big), 413, "over the limit of 1,000,000 bytes")
    chunks = (big[i:i + 65536] for i in range(0, len(big), 65536))  # no Content-Length: read until the limit
    refused(client.post("/v1/completions", content=chunks), 413, "over the limit")


ODD_VALUES = [None, True, False, -1, 0, 2, 10**9, 1.5, float("nan"), "x", "", [], ["x"], [1], {}, {"a": 1}]
FIELDS = ["prompt", "messages", "max_tokens", "temperature", "seed", "stop", "logprobs", "top_logprobs", "echo",
          "add_special_tokens"]


def test_no_odd_value_in_any_field_makes_a_500(client):
    statuses = set()
    for path, base in (("/v1/completions", COMPLETION), ("/v1/chat/completions", CHAT)):
        for field in FIELDS:
            for value in ODD_VALUES:
                r = client.post(path, content=json.dumps({**base, field: value}),
                                headers={"content-type": "application/json"})
                assert r.status_code in (200, 400), (path, field, value, r.status_code, r.text[:300])
                statuses.add(r.status_code)
                assert ("error" in r.json()) == (r.status_code == 400)
    assert statuses == {200, 400}


def test_after_a_crash_the_server_says_so_in_json_and_keeps_serving(client, lm):
    def fail_once(module, args):
        handle.remove()
        raise RuntimeError("simulated out-of-memory")

    handle = lm.model.register_forward_pre_hook(fail_once)
    r = client.post("/v1/completions", json=COMPLETION)
    assert r.status_code == 500 and r.json()["error"] == {"message": "RuntimeError: simulated out-of-memory",
                                                          "type": "server_error"}
    assert client.post("/v1/completions", json=COMPLETION).status_code == 200


def test_requests_in_parallel_run_the_model_one_forward_at_a_time(lm):
    state = {"inside": 0, "peak": 0}
    lock = threading.Lock()

    def enter(module, args):
        with lock:
            state["inside"] += 1
            state["peak"] = max(state["peak"], state["inside"])
        time.sleep(0.005)  # widen the window in which a second forward could start

    def leave(module, args, output):
        with lock:
            state["inside"] -= 1

    handles = [lm.model.register_forward_pre_hook(enter), lm.model.register_forward_hook(leave)]
    statuses = []
    try:
        with serving(create_model_app(ModelServer(lm))) as url:
            def ask(i):
                statuses.append(httpx.post(f"{url}/v1/completions", json={"prompt": f"q{i}", "max_tokens": 4},
                                           timeout=60).status_code)

            threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        for h in handles:
            h.remove()
    assert statuses == [200] * 6 and state["peak"] == 1 and state["inside"] == 0


def test_a_taken_port_is_a_clear_error():
    with bind("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(GreyglassError, match=f"cannot listen on 127.0.0.1:{port} .*try another --port"):
            bind("127.0.0.1", port)
