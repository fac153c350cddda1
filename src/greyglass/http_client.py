"""The one HTTP client: JSON to and from an OpenAI-compatible server, with an API key, a timeout and retries.

The feature explainer (`latents.explainer`) and the eval HTTP backend (`behaviour.remote`) both
talk through `JsonClient`, so they share these rules:

- **API key**: the `api_key` argument, else the environment variable `OPENAI_API_KEY` (the
  name OpenAI's own clients read), sent as `Authorization: Bearer KEY`; no header when neither
  is set (a local server such as `greyglass serve-model` needs none).
- **Retries**: a connection error, a timeout, HTTP 408, 429 or 5xx (but 501, "not
  implemented") is tried again up to `retries` more times, after waiting `backoff_s`, then
  twice that, and so on, each wait up to a quarter longer at random so parallel requests spread
  out. Any other 4xx fails at once: the same request would be refused again.
- **Errors** are `GreyglassError`s naming the URL, the status (or the connection problem) and
  what to do; a refusal is an `HttpError`, which also carries the status.
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any

import httpx

from .errors import GreyglassError

API_KEY_ENV = "OPENAI_API_KEY"


class HttpError(GreyglassError):
    """The server refused the request with a status that retrying would not change."""

    def __init__(self, message: str, url: str, status: int):
        super().__init__(message)
        self.url, self.status = url, status


def is_retryable(status: int) -> bool:
    """Statuses that may pass on a later try: the server timed out, was rate-limited or failed."""
    return status in (408, 429) or (status >= 500 and status != 501)


class JsonClient:
    """JSON requests to endpoints under `base_url` (e.g. http://127.0.0.1:8000/v1); thread-safe."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 60.0, retries: int = 4,
                 backoff_s: float = 0.5):
        if not base_url.startswith(("http://", "https://")):
            raise GreyglassError(f"a server URL must start with http:// or https://, got {base_url!r}")
        key = api_key or os.environ.get(API_KEY_ENV)
        self.base_url = base_url.rstrip("/")
        self.sends_key = bool(key)
        self.retries, self.backoff_s = retries, backoff_s
        self._http = httpx.Client(headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=timeout_s,
                                  follow_redirects=True)

    def get(self, endpoint: str) -> dict[str, Any]:
        """GET `base_url/endpoint`; the decoded JSON object."""
        return self._request("GET", endpoint, None)

    def post(self, endpoint: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST `payload` as JSON to `base_url/endpoint`; the decoded JSON object."""
        return self._request("POST", endpoint, payload)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> JsonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, endpoint: str, payload: dict[str, Any] | None) -> dict[str, Any]:
        url = f"{self.base_url}/{endpoint.lstrip('/')}"
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1) * (1 + random.random() / 4))
            try:
                response = self._http.request(method, url, json=payload)
            except httpx.TransportError as e:  # refused, reset or timed out: the server may be starting or busy
                last = f"{type(e).__name__}: {e}"
                continue
            if response.is_success:
                return _json_object(url, response)
            if not is_retryable(response.status_code):
                raise self._refusal(url, response)
            last = f"HTTP {response.status_code}: {_detail(response)}"
        raise GreyglassError(f"{url}: no answer after {self.retries + 1} tries (last: {last}); check that the server "
                             "is running and that the URL is its API base, e.g. http://127.0.0.1:8000/v1 "
                             "(`greyglass serve-model` starts one)")

    def _refusal(self, url: str, response: httpx.Response) -> HttpError:
        status = response.status_code
        if status in (401, 403):
            todo = (f"the API key was refused; pass the right one (api_key, or the {API_KEY_ENV} environment variable)"
                    if self.sends_key else f"no API key was sent; set the {API_KEY_ENV} environment variable")
        elif status in (404, 405):
            todo = "the server has no such endpoint; check the URL (an OpenAI-compatible API base usually ends in /v1)"
        else:
            todo = "the server refused the request; its message says why"
        return HttpError(f"{url}: HTTP {status}: {_detail(response)}; {todo}", url, status)


def _json_object(url: str, response: httpx.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        value = None
    if not isinstance(value, dict):
        raise GreyglassError(f"{url}: HTTP {response.status_code}, but the answer is not a JSON object "
                             f"({_detail(response, 80)!r}); is this the API base of an OpenAI-compatible server?")
    return value


def _detail(response: httpx.Response, limit: int = 300) -> str:
    """The start of the server's answer, on one line, for an error message."""
    return " ".join(response.text.split())[:limit] or "(empty body)"
