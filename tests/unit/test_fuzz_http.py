"""The two HTTP apps, fuzzed (issue 22; docs/reliability.md): `serve-model`'s OpenAI-compatible API
and the browser, through Starlette's test client on a tiny random model.

Requests are generated with hypothesis: bodies that are random bytes or valid requests with one
field dropped or retyped (tests/fuzzing.py), prompts around and far past the model's context, any
method on any route, query values past the browser's limits, run ids with path traversal
and markup, hostile query values and Host headers. Every answer must be a 2xx or a 4xx with a
message (never a 500), JSON answers must be JSON, markup sent in must come back escaped in HTML,
nothing outside the runs folder may be shown, and the app must answer a good request afterwards.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from fuzzing import HOSTILE_STRINGS, mutated_bytes, mutated_json
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

MARK = "<b id=fz>"
"""Markup sent in every text field; the browser must show it escaped (`&lt;b id=fz&gt;`), never as a tag."""
HOSTILE = st.sampled_from([*HOSTILE_STRINGS, MARK, f"{MARK}../../secret", "%2e%2e/%2e%2e/secret", "..%2fsecret",
                           "/etc/passwd", "C:\\Windows", "\r\nSet-Cookie: a=b"]) | st.text(max_size=30).map(lambda t: t + MARK)
SECRET = "greyglass-fuzz-secret-beside-the-runs-folder"

CHAT = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "temperature": 0, "logprobs": True,
        "top_logprobs": 2, "stop": ["x"], "seed": 1}
COMPLETION = {"prompt": ["Hi", "there"], "max_tokens": 2, "temperature": 0.5, "seed": 3, "logprobs": 2, "echo": True,
              "stop": "x", "add_special_tokens": False}
MODEL_ROUTES = ("/v1/completions", "/v1/chat/completions", "/v1/models", "/models", "/v1/nothing", "/")


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def model_client(request):
    """The API over a tiny chat model with rotary positions (llama) or learned ones (gpt2), 256 of them."""
    from greyglass.models.tiny import tiny_model
    from greyglass.serve.model_api import ModelServer, create_model_app

    return TestClient(create_model_app(ModelServer(tiny_model(request.param, chat=True))), raise_server_exceptions=False)


def _json_answer(r) -> dict:
    assert r.status_code != 500 and r.status_code in (200, 400, 404, 405, 413), (r.status_code, r.text[:300])
    assert r.headers["content-type"] == "application/json"
    body = json.loads(r.text)  # markup in a prompt comes back only inside JSON strings
    if r.status_code != 200:
        assert body["error"]["message"]
    return body


@st.composite
def model_request(draw):
    path = draw(st.sampled_from(MODEL_ROUTES))
    method = draw(st.sampled_from(["POST", "POST", "GET", "PUT", "DELETE"]))
    valid = CHAT if "chat" in path else COMPLETION
    how = draw(st.sampled_from(["json", "bytes", "markup", "long"]))
    if how == "long":  # around and far past the model's context of 256 tokens, under the 1 MB body limit
        text = "x" * draw(st.sampled_from([100, 250, 255, 300, 5000, 200_000]))
        body = json.dumps({**valid, "prompt": text, "messages": [{"role": "user", "content": text}],
                           "max_tokens": draw(st.sampled_from([0, 1, 16, 4096]))}).encode()
    elif how == "json":
        body = draw(mutated_json(valid))[0].encode()
    elif how == "bytes":
        body = draw(mutated_bytes(json.dumps(valid).encode()))
    else:
        body = json.dumps({**valid, "prompt": f"{MARK}{draw(HOSTILE)}", "messages": [{"role": "user", "content": MARK}]}
                          ).encode()
    return method, path, body


@given(request=model_request())
def test_model_api_answers_every_request_in_json_and_keeps_serving(model_client, request):
    method, path, body = request
    body_json = _json_answer(model_client.request(method, path, content=body))
    if MARK in body.decode("utf-8", "replace"):
        assert "&lt;" not in json.dumps(body_json)  # JSON is not HTML-escaped; a browser never renders it as HTML
    _json_answer(model_client.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 1}))


@given(size=st.sampled_from([1_000_001, 5_000_000]), declared=st.booleans())
def test_model_api_refuses_a_huge_prompt_with_413(model_client, size, declared):
    body = json.dumps({"prompt": "x" * size}).encode()

    def chunks():
        yield body

    r = model_client.post("/v1/completions", content=body if declared else chunks())
    assert r.status_code == 413 and "limit" in _json_answer(r)["error"]["message"]


def test_model_api_refuses_a_prompt_past_the_context_with_400(model_client):
    # a 100 KB prompt was an IndexError (500) with learned positions, and 8 minutes of attention with rotary ones
    r = model_client.post("/v1/completions", json={"prompt": "x" * 100_000, "max_tokens": 1})
    assert r.status_code == 400 and "over the model's context of 256 tokens" in _json_answer(r)["error"]["message"]
    r = model_client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x" * 200}],
                                                        "max_tokens": 100})
    assert r.status_code == 400 and "max_tokens is 100" in _json_answer(r)["error"]["message"]
    assert _json_answer(model_client.post("/v1/completions", json={"prompt": "x" * 200, "max_tokens": 2}))["choices"]


@given(host=HOSTILE)
def test_model_api_with_any_host_header(model_client, host):
    _json_answer(model_client.get("/v1/models", headers={"host": host.encode()}))


# --- the browser ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tiny_llama, tmp_path_factory):
    """The browser over serve_runs' runs plus one whose kind, config and results are markup, with a
    file beside the runs folder that no route may show."""
    from serve_runs import make_runs

    from greyglass.runs import write_config, write_results
    from greyglass.serve.app import create_app

    base = tmp_path_factory.mktemp("browser")
    (base / "secret.txt").write_text(SECRET)
    (base / "config.json").write_text(json.dumps({"kind": "capture", "secret": SECRET}))
    root = make_runs(base / "runs", tiny_llama)
    evil = root / "evil" / MARK
    write_config(evil, MARK, config={MARK: MARK})
    write_results(evil, {MARK: MARK, "n": 1})
    with open(root / "eval" / "e1" / "items.jsonl", "a") as f:
        f.write(json.dumps({"id": MARK, "question": MARK, MARK: MARK}) + "\n")
    app = create_app(root, load=lambda spec: tiny_llama, hosts=["127.0.0.1", "localhost", "testserver"])
    return TestClient(app, raise_server_exceptions=False)


BROWSER_ROUTES = ("/", "/run/{rid}", "/eval/{rid}", "/item/{rid}/{n}", "/features", "/features/{rid}/index.html",
                  "/features/{rid}/latent_{n}.html", "/text", "/steer", "/{rid}")
RIDS = st.sampled_from(["capture/c1", "eval/e1", "sae/s1/features", f"evil/{MARK}", "../secret.txt", "..", "../..",
                        "probe/p1"]) | HOSTILE
PARAMS = ("q", "fires_on", "text", "field", "value", "page", "limit", "coef", "max_tokens", "mode", "vector", "latent",
          "prompt", "features")


def _html_answer(r) -> str:
    assert r.status_code in (200, 400, 404, 405, 413), (r.status_code, r.text[:300])
    assert "Traceback" not in r.text and SECRET not in r.text
    assert MARK not in r.text, "markup sent in came back unescaped"
    return r.text


@st.composite
def browser_request(draw):
    route = draw(st.sampled_from(BROWSER_ROUTES))
    path = route.format(rid=draw(RIDS), n=draw(st.sampled_from(["0", "1", "-1", "999999999999", "x"])))
    path = quote(path, safe="/%")  # as a client sends it on the wire; the server decodes it
    params = draw(st.dictionaries(st.sampled_from(PARAMS), HOSTILE | st.sampled_from(["0", "1", "nan", "inf", "-5",
                                                                                       "direction:probe/p1/direction",
                                                                                       "x" * 2001, "x" * 10_000]),
                                  max_size=4))
    if draw(st.booleans()) and "text" not in params:
        params["text" if route in ("/text", "/features/{rid}/index.html") else "prompt"] = draw(st.text(max_size=20))
    return path, params


@given(request=browser_request())
def test_browser_escapes_markup_hides_files_outside_and_keeps_serving(browser, request):
    path, params = request
    _html_answer(browser.get(path, params=params))
    assert browser.get("/").status_code == 200


@given(host=HOSTILE)
def test_browser_refuses_hosts_it_was_not_told(browser, host):
    r = browser.get("/", headers={"host": host.encode()})
    assert r.status_code == 400 and SECRET not in r.text


def test_browser_refuses_text_past_the_models_context(tiny_llama, tmp_path):
    from serve_runs import make_runs

    from greyglass.models.tiny import tiny_model
    from greyglass.serve.app import create_app

    gpt2 = tiny_model("gpt2")  # learned positions: past its 256 an IndexError, once a 500
    client = TestClient(create_app(make_runs(tmp_path, tiny_llama), load=lambda spec: gpt2),
                        raise_server_exceptions=False)
    r = client.get("/text", params={"text": "x" * 1000, "vector": "direction:probe/p1/direction"})
    assert r.status_code == 400 and "over the model&#39;s context of 256" in r.text, r.text[-500:]
