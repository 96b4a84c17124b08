"""The HTTP endpoint Alertmanager posts to: its alerts about the tracker, forwarded.

``POST /alertmanager`` takes Alertmanager's webhook message (version 4) and hands it to a
forwarder (:meth:`mhst_tracker.notify.service.Notifier.forward_operations`), answering 200
when every operations recipient took it and 503 otherwise, so Alertmanager sends it again.
``GET /healthz`` answers 200. Served by uvicorn inside the notifier's event loop; the
notifier, not uvicorn, handles the process's signals.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Final

import orjson
import uvicorn

PATH: Final = "/alertmanager"
MAX_BODY_BYTES: Final = 1024 * 1024

Forwarder = Callable[[Mapping[str, Any]], Awaitable[bool]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

log = logging.getLogger(__name__)


def application(forward: Forwarder) -> Callable[[dict[str, Any], Receive, Send], Awaitable[None]]:
    """The ASGI application of the endpoint."""

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/healthz" and scope["method"] == "GET":
            await _answer(send, 200, b"ok\n")
            return
        if scope["path"] != PATH:
            await _answer(send, 404, b"not found\n")
            return
        if scope["method"] != "POST":
            await _answer(send, 405, b"POST only\n")
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_BODY_BYTES:
                await _answer(send, 413, b"too large\n")
                return
            if not message.get("more_body"):
                break
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
            await _answer(send, 400, b"expected Alertmanager's webhook message\n")
            return
        delivered = await forward(payload)
        await _answer(send, 200 if delivered else 503, b"ok\n" if delivered else b"retry\n")

    return app


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the notifier stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def server(forward: Forwarder, host: str, port: int) -> uvicorn.Server:
    """A server of the endpoint on ``host:port``: ``await server.serve()`` runs it,
    ``server.should_exit = True`` stops it."""
    config = uvicorn.Config(
        application(forward), host=host, port=port, lifespan="off", log_level="warning",
        access_log=False,
    )  # fmt: skip
    return _Server(config)
