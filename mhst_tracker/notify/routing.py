"""Who is sent an alert, and the identity of each delivery.

A breach or an at-risk warning goes to every recipient whose teams, kinds and stages cover
it. A withdrawal goes to no one by routing: the ledger knows who was sent the breach it
withdraws (:func:`withdrawn_breach`), and only they are sent a correction.

Each (alert, recipient) has one :func:`delivery_id`, the same however often it is sent:
the ``webhook-id`` of a webhook and the ``Message-ID`` of an email, so a receiver can drop
a repeat. A digest has one per recipient and local date (:func:`digest_id`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import date
from typing import Final

from mhst_tracker.domain.alerts import Alert, AlertKind, alert_id
from mhst_tracker.notify.config import Recipient

_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "urn:mhst-tracker:delivery")


def wants(recipient: Recipient, alert: Alert) -> bool:
    """Whether ``recipient`` asked for ``alert`` (a breach or an at-risk warning)."""
    if alert.kind not in recipient.kinds or alert.stage not in recipient.stages:
        return False
    return recipient.teams is None or alert.team_id in recipient.teams


def recipients_of(alert: Alert, recipients: Iterable[Recipient]) -> list[Recipient]:
    """The recipients routed ``alert``; none for a withdrawal (see :func:`withdrawn_breach`)."""
    if alert.kind is AlertKind.BREACH_WITHDRAWN:
        return []
    return [recipient for recipient in recipients if wants(recipient, alert)]


def withdrawn_breach(withdrawal: Alert) -> str:
    """The ``alert_id`` of the breach a ``breach_withdrawn`` alert withdraws."""
    return alert_id(withdrawal.referral_id, withdrawal.stage, AlertKind.BREACH)


def delivery_id(alert_id: str, recipient: str) -> str:
    """The id of the delivery of ``alert_id`` to ``recipient`` (a UUID 5)."""
    return str(uuid.uuid5(_NAMESPACE, f"{alert_id}\x1f{recipient}"))


def digest_id(recipient: str, day: date) -> str:
    """The id of ``recipient``'s digest of ``day`` (a UUID 5)."""
    return str(uuid.uuid5(_NAMESPACE, f"digest\x1f{recipient}\x1f{day.isoformat()}"))
