"""When things are due: each recipient's daily digest, and the next try of a delivery.

Digests are at a local time of day in the recipient's time zone (Europe/London by default,
so 08:00 is 07:00 UTC in British Summer Time and 08:00 UTC in winter). The digest of a day
is due from its moment on; the notifier sends the latest one due that it has not sent, so a
digest missed while it was down is sent when it comes back, once, and the days before it
are not sent one by one (their alerts are in it).

Retries back off exponentially with jitter: the n-th retry waits ``backoff * 2**(n-1)``
seconds, capped at ``max_backoff``, of which a random half is taken off, so deliveries
that failed together (an SMTP server down) do not all come back at once.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from mhst_tracker.notify.config import Delivery


def digest_moment(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of ``day``'s digest: ``at`` local time on ``day`` in ``zone``.

    A time that does not exist that day (skipped when the clocks go forward) is taken as
    the same wall time after the change, as :mod:`zoneinfo` reads it."""
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def due_digest_day(now: datetime, at: time, zone: ZoneInfo) -> date:
    """The latest local date whose digest moment is at or before ``now``."""
    today = now.astimezone(zone).date()
    if digest_moment(today, at, zone) <= now:
        return today
    return today - timedelta(days=1)


def next_digest_moment(now: datetime, at: time, zone: ZoneInfo) -> datetime:
    """The first digest moment after ``now``."""
    return digest_moment(due_digest_day(now, at, zone) + timedelta(days=1), at, zone)


def backoff_seconds(retry: int, delivery: Delivery, draw: float) -> float:
    """Seconds to wait before the ``retry``-th retry (1 for the first), given a uniform
    random ``draw`` in [0, 1): between half and all of the capped exponential delay."""
    ceiling = min(delivery.max_backoff_seconds, delivery.backoff_seconds * 2.0 ** (retry - 1))
    return ceiling / 2 + ceiling / 2 * draw


def next_attempt(attempts: int, delivery: Delivery, now: datetime, draw: float) -> datetime | None:
    """When to try again after ``attempts`` failed attempts, or ``None``: the delivery has
    failed for good (``max_attempts`` made)."""
    if attempts >= delivery.max_attempts:
        return None
    return now + timedelta(seconds=backoff_seconds(attempts, delivery, draw))
