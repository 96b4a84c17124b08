"""The notifier's channels: SMTP (:mod:`.email`), Standard Webhooks (:mod:`.webhook`), and
the HTTP endpoint that takes Alertmanager's webhook (:mod:`.alertmanager`).

A channel sends one :class:`~mhst_tracker.notify.messages.Notice` to one recipient, or
raises :class:`DeliveryError` with a reason that names the kind of failure (a status code,
an exception's type), never an address, a body or a secret.
"""

from __future__ import annotations

from typing import Protocol

from mhst_tracker.notify.config import Recipient
from mhst_tracker.notify.messages import Notice


class DeliveryError(Exception):
    """A notice was not delivered; ``reason`` says why, without values."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Sender(Protocol):
    """Sends notices by one channel."""

    async def send(self, notice: Notice, recipient: Recipient) -> None:
        """Deliver ``notice`` to ``recipient``; :class:`DeliveryError` if not delivered."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
