"""Real receivers for the notifier's tests, the demo and the benchmark: an SMTP server
(aiosmtpd) and an HTTP webhook receiver that checks Standard Webhooks signatures.

The receiver's check is written from the specification (HMAC-SHA256 over
``webhook-id.webhook-timestamp.body`` with the base64 key after ``whsec_``, signatures
``v1,<base64>`` separated by spaces, a timestamp within five minutes), not with the
``standardwebhooks`` package the notifier signs with. A request that fails it is answered
401 and not recorded as delivered; a ``webhook-id`` seen before is answered 200 and counted
as a repeat.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session

from deploy.local.process import free_port

TOLERANCE_SECONDS = 300


def spec_verify(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> bool:
    """Whether a webhook request is signed as the Standard Webhooks specification says."""
    lowered = {key.lower(): value for key, value in headers.items()}
    message_id = lowered.get("webhook-id")
    timestamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not (message_id and timestamp and signatures) or not timestamp.isdigit():
        return False
    if abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    for signature in signatures.split(" "):
        version, _, value = signature.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return True
    return False


@dataclass
class Mailbox:
    """What an SMTP server received."""

    messages: list[EmailMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    on_message: Callable[[EmailMessage], None] | None = None

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        message = message_from_bytes(content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.messages.append(message)
        if self.on_message is not None:
            self.on_message(message)
        return "250 Message accepted for delivery"

    def received(self) -> list[EmailMessage]:
        with self.lock:
            return list(self.messages)


@contextmanager
def smtp_server(
    port: int | None = None, mailbox: Mailbox | None = None
) -> Iterator[tuple[int, Mailbox]]:
    """An SMTP server on 127.0.0.1 (a free port unless given) until the block ends."""
    mailbox = Mailbox() if mailbox is None else mailbox
    port = free_port() if port is None else port
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, mailbox
    finally:
        controller.stop()


@dataclass
class Received:
    """One webhook request as the receiver saw it."""

    webhook_id: str
    body: dict[str, Any]
    verified: bool
    status: int


@dataclass
class WebhookReceiver:
    """An HTTP receiver of webhooks: it checks each request's signature and records it.

    ``plan`` says what to answer, request by request (a status code, or a float: seconds to
    stall before answering 200, past the sender's timeout); after it, 200. ``hold`` makes
    every request wait until it is cleared (a test kills the sender meanwhile).
    """

    secret: str
    plan: list[int | float] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    hold: threading.Event | None = None
    arrived: set[str] = field(default_factory=set)
    """The ``webhook-id`` of every signed request that arrived (answered or not yet)."""
    arrival_times: dict[str, float] = field(default_factory=dict)
    """When each ``webhook-id`` first arrived (``time.time()``)."""
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/mhst"

    def accepted(self) -> list[Received]:
        """Requests verified and answered 2xx, in arrival order."""
        with self.lock:
            return [r for r in self.requests if r.verified and r.status < 300]

    def delivered_ids(self) -> dict[str, int]:
        """How many times each ``webhook-id`` was accepted (a repeat is dropped by a
        receiver that keeps the ids it has seen)."""
        counts: dict[str, int] = {}
        for request in self.accepted():
            counts[request.webhook_id] = counts.get(request.webhook_id, 0) + 1
        return counts

    def handle(self, headers: Mapping[str, str], body: bytes) -> int:
        verified = spec_verify(self.secret, headers, body, time.time())
        status: int = 200 if verified else 401
        with self.lock:
            step = self.plan.pop(0) if self.plan and verified else None
            hold = self.hold
            if verified:
                webhook_id = headers.get("webhook-id", "")
                self.arrived.add(webhook_id)
                self.arrival_times.setdefault(webhook_id, time.time())
        if isinstance(step, float):
            time.sleep(step)
        elif isinstance(step, int):
            status = step
        if hold is not None:
            hold.wait()
        payload = orjson.loads(body) if verified else {}
        with self.lock:
            self.requests.append(Received(headers.get("webhook-id", ""), payload, verified, status))
        return status


@contextmanager
def webhook_receiver(secret: str, port: int | None = None) -> Iterator[WebhookReceiver]:
    """A :class:`WebhookReceiver` served on 127.0.0.1 until the block ends."""
    receiver = WebhookReceiver(secret)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            status = receiver.handle(dict(self.headers.items()), body)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 256  # a sender's whole pool connecting at once is not refused

    server = Server(("127.0.0.1", port or 0), Handler)
    receiver.port = server.server_port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        if receiver.hold is not None:
            receiver.hold.set()
        server.shutdown()
        server.server_close()
