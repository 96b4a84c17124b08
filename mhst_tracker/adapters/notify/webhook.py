"""Webhooks that follow the Standard Webhooks specification, signed by ``standardwebhooks``.

Each request is a JSON ``POST`` with ``webhook-id`` (the delivery's id, the same on every
attempt, so the receiver drops a repeat), ``webhook-timestamp`` (the wall clock's Unix
seconds: receivers refuse a timestamp far from their own clock, so a simulated clock never
signs) and ``webhook-signature`` (``v1,`` and the HMAC-SHA256 of ``id.timestamp.body``
under the recipient's secret). Any 2xx answer is a delivery; anything else, a timeout or
an unreachable host is a failure to retry. One HTTP client (a pool of connections) serves
every recipient.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import orjson
from standardwebhooks import Webhook

from mhst_tracker.adapters.notify import DeliveryError
from mhst_tracker.notify.config import Recipient
from mhst_tracker.notify.messages import Notice


def signed_request(
    notice: Notice, secret: str, now: float | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of ``notice``'s request, signed with ``secret``."""
    body = orjson.dumps(notice.body)
    timestamp = datetime.fromtimestamp(int(time.time() if now is None else now), UTC)
    signature = Webhook(secret).sign(notice.message_id, timestamp, body.decode())
    return body, {
        "content-type": "application/json",
        "webhook-id": notice.message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
    }


class WebhookSender:
    """Posts notices to webhook recipients."""

    def __init__(self, timeout: float, connections: int) -> None:
        self.client = httpx.AsyncClient(
            timeout=timeout,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )

    async def send(self, notice: Notice, recipient: Recipient) -> None:
        """One signed ``POST``; :class:`DeliveryError` names what failed."""
        assert recipient.secret is not None
        body, headers = signed_request(notice, recipient.secret)
        try:
            response = await self.client.post(recipient.address, content=body, headers=headers)
        except httpx.TimeoutException:
            raise DeliveryError("webhook timed out") from None
        except httpx.HTTPError as error:
            raise DeliveryError(f"webhook unreachable ({type(error).__name__})") from None
        if not response.is_success:
            raise DeliveryError(f"webhook answered {response.status_code}")

    async def close(self) -> None:
        """Close the pool."""
        await self.client.aclose()
