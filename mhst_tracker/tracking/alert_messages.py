"""Alert messages for ``mhst.breach-alerts``: the body, its key and the key's partition hash.

A timer decides its alerts ahead of the moment it sends them, so a body is serialised when
the alert is decided (:func:`unstamped`) and completed with ``detected_at`` when it is sent
(:func:`stamped`, a bytes concatenation). Partitions are chosen as Kafka's default
partitioner chooses them (murmur2 of the key, the referral id), so all alerts of a referral
stay in one partition, in order.
"""

from __future__ import annotations

from typing import Final

import orjson
from aiokafka.partitioner import murmur2

from mhst_tracker.domain.alerts import Alert

POSITIVE: Final = 0x7FFFFFFF

Message = tuple[int, bytes, bytes]
"""``(key_hash(key), key, value)``: a keyed message with its partition hash."""


def key_hash(key: bytes) -> int:
    """The default partitioner's hash of a key (murmur2, made positive)."""
    return int(murmur2(key) & POSITIVE)


def unstamped(alert: Alert) -> bytes:
    """The alert's message body without ``detected_at`` and the closing brace.

    A timer decides its alerts ahead of the moment it sends them; :func:`stamped` completes
    the body with the moment of sending at the cost of a bytes concatenation.
    """
    body = alert.to_dict()
    del body["detected_at"]
    return orjson.dumps(body)[:-1]


def stamped(body: bytes, detected_at: bytes) -> bytes:
    """An :func:`unstamped` body completed with ``detected_at`` (ISO 8601, UTF-8)."""
    return body + b',"detected_at":"' + detected_at + b'"}'


def alert_message(alert: Alert) -> Message:
    """The message of an alert as decided (its own ``detected_at``)."""
    key = alert.referral_id.encode()
    body = stamped(unstamped(alert), alert.detected_at.isoformat().encode())
    return key_hash(key), key, body
