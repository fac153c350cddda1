"""Run a Starlette app with uvicorn on a socket bound here: `greyglass serve`, `serve-model`, and tests.

The socket is bound before uvicorn starts, so a taken port is a `GreyglassError` (not a log
line and an exit), port 0 picks a free port whose number is known at once, and the URL can be
printed or handed to a test before the first request. uvicorn runs in a background thread;
`serving` stops it when its block ends, `serve_until_stopped` when Ctrl-C is pressed or after
`max_seconds`.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

from ..errors import GreyglassError

START_TIMEOUT_S = 30.0


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (0: a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart may reuse a port left in TIME_WAIT
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise GreyglassError(f"cannot listen on {host}:{port} ({e.strerror}); try another --port or --host") from None
    return sock


@contextmanager
def serving(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """`app` served while the block runs; yields its base URL, e.g. http://127.0.0.1:8000."""
    sock = bind(host, port)
    # a few seconds for requests in flight when the block ends, then they are cancelled
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise GreyglassError(f"the server on {host}:{port} did not start; its log above says why")
            time.sleep(0.01)
        address = f"[{host}]" if ":" in host else host
        yield f"http://{address}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


def serve_until_stopped(app: ASGIApp, host: str, port: int, announce: Callable[[str], None],
                        max_seconds: float | None = None) -> None:
    """Serve `app`, call `announce(url)` once it listens, and return on Ctrl-C or after `max_seconds`."""
    with serving(app, host, port) as url:
        announce(url)
        try:
            threading.Event().wait(max_seconds)  # nothing sets it: a sleep that Ctrl-C ends
        except KeyboardInterrupt:
            pass
