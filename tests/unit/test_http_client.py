"""The one HTTP client against a real loopback server that answers from a script: retries, key, errors."""

import json
import time
from types import SimpleNamespace

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from greyglass import GreyglassError
from greyglass.http_client import API_KEY_ENV, HttpError, JsonClient
from greyglass.serve.listen import bind, serving


@pytest.fixture(scope="module")
def scripted_server():
    """Answers the n-th request with the n-th (status, body) of `script` (the last one from then on); records requests."""
    state = SimpleNamespace(script=[(200, "{}")], seen=[])

    async def answer(request: Request) -> Response:
        state.seen.append({"method": request.method, "path": request.url.path, "body": await request.body(),
                           "authorization": request.headers.get("authorization")})
        status, text = state.script[min(len(state.seen), len(state.script)) - 1]
        return Response(text, status, media_type="application/json")

    app = Starlette(routes=[Route("/v1/{endpoint:path}", answer, methods=["GET", "POST"])])
    with serving(app) as base:
        state.url = f"{base}/v1"
        yield state


@pytest.fixture
def server(scripted_server, monkeypatch):
    """The scripted server, its record emptied, and no API key in the environment."""
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    scripted_server.seen.clear()

    def play(*script):
        scripted_server.script = list(script)
        return scripted_server

    return play


def client(url, **options):
    return JsonClient(url, **{"retries": 3, "backoff_s": 0.01, **options})


def test_connection_errors_429_and_5xx_are_retried_until_an_answer(server):
    s = server((503, ""), (429, "slow down"), (500, "oops"), (200, '{"choices": [1]}'))
    assert client(s.url).post("completions", {"prompt": "x"}) == {"choices": [1]}
    assert len(s.seen) == 4
    assert all(r["method"] == "POST" and r["path"] == "/v1/completions" and json.loads(r["body"]) == {"prompt": "x"}
               for r in s.seen)
    assert client(s.url).get("models") == {"choices": [1]} and s.seen[-1]["method"] == "GET"


def test_giving_up_names_the_url_the_last_status_and_waits_with_backoff(server):
    s = server((502, "bad gateway"))
    start = time.monotonic()
    with pytest.raises(GreyglassError, match=r"/v1/completions: no answer after 3 tries \(last: HTTP 502: bad gateway\)"
                                             r".*server is running"):
        client(s.url, retries=2, backoff_s=0.2).post("completions", {})
    waited = time.monotonic() - start
    assert len(s.seen) == 3 and 0.2 + 0.4 <= waited < 0.2 * 1.25 + 0.4 * 1.25 + 1.0  # 0.2 then 0.4, up to 25% more


@pytest.mark.parametrize("status, words", [
    (400, "HTTP 400: no prompt; the server refused the request"),
    (401, f"HTTP 401: no prompt; no API key was sent; set the {API_KEY_ENV} environment variable"),
    (404, "HTTP 404: no prompt; the server has no such endpoint; check the URL .* /v1"),
    (422, "HTTP 422: no prompt; the server refused the request"),
])
def test_other_4xx_fail_at_once_with_the_status_and_what_to_do(server, status, words):
    s = server((status, "no prompt"))
    with pytest.raises(HttpError, match=words) as caught:
        client(s.url).post("completions", {})
    assert len(s.seen) == 1 and caught.value.status == status and caught.value.url == f"{s.url}/completions"
    assert str(caught.value).startswith(f"{s.url}/completions: ")


def test_the_api_key_comes_from_the_argument_else_the_environment(server, monkeypatch):
    s = server((401, "bad key"))
    with pytest.raises(HttpError, match=f"the API key was refused; pass the right one .*{API_KEY_ENV}"):
        client(s.url, api_key="wrong").post("x", {})
    s = server((200, "{}"))
    client(s.url).post("x", {})
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    client(s.url).post("x", {})
    client(s.url, api_key="from-arg").post("x", {})
    assert [r["authorization"] for r in s.seen[1:]] == [None, "Bearer from-env", "Bearer from-arg"]


@pytest.mark.parametrize("text", ["<html>busy</html>", "[1, 2]", ""])
def test_an_answer_that_is_not_a_json_object_is_an_error_not_a_retry(server, text):
    s = server((200, text))
    with pytest.raises(GreyglassError, match=r"/v1/completions: HTTP 200, but the answer is not a JSON object"):
        client(s.url).post("completions", {})
    assert len(s.seen) == 1


def test_a_closed_port_is_retried_then_explained():
    with bind("127.0.0.1", 0) as sock:
        port = sock.getsockname()[1]  # bound, never listened on after close: connections are refused
    with pytest.raises(GreyglassError, match=rf"127.0.0.1:{port}/v1/models: no answer after 3 tries \(last: Connect"):
        client(f"http://127.0.0.1:{port}/v1", retries=2).get("models")


def test_a_url_without_a_scheme_is_refused_before_any_request():
    with pytest.raises(GreyglassError, match="must start with http:// or https://, got 'localhost:8000/v1'"):
        JsonClient("localhost:8000/v1")
