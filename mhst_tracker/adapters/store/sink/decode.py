"""Messages into the store's inputs: events, alerts and rejections, one message at a time.

Events are accepted exactly as the workers accept them (:func:`mhst_tracker.pipeline.accept`);
an invalid event becomes a rejection keyed by where it was read, so the workers' dead letter
for the same message (whose headers name that place) is the same rejection, stored once.
Whatever goes wrong with one message becomes its rejection (or, on the alerts topic, a
skipped message) and the messages around it are kept: no message stops the sink. A reason
names the field and the rule, or the kind of failure, never a value from the message.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final, Protocol

import orjson

from mhst_tracker.adapters.metrics import SinkMetrics
from mhst_tracker.adapters.store.backend import unstorable
from mhst_tracker.adapters.store.records import (
    Batch,
    IncomingAlert,
    IncomingEvent,
    InvalidAlert,
    Origin,
    Rejection,
    alert_from_dict,
)
from mhst_tracker.dead_letters import DeadLetter
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.pipeline import accept
from mhst_tracker.topics import TopicNames

log = logging.getLogger(__name__)

NO_HEADERS: Final = "dead letter without its headers"


class Message(Protocol):
    """The fields of an aiokafka ``ConsumerRecord`` the sink reads."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


def decode(
    messages: Sequence[Message], topics: TopicNames, max_event_bytes: int, metrics: SinkMetrics
) -> Batch:
    """Turn a poll's messages into a batch for the store."""
    batch = Batch()
    now = datetime.now(UTC)
    events, rejections, events_topic = batch.events, batch.rejections, topics.events
    timestamp, received_at = None, now
    for message in messages:
        topic = message.topic
        origin = Origin(topic, message.partition, message.offset, None)
        if message.timestamp != timestamp:  # often shared by the messages of a batch
            timestamp = message.timestamp
            received_at = datetime.fromtimestamp(timestamp / 1000, UTC)
        if topic == events_topic:
            value = message.value
            try:
                event = accept(message.key, value, max_event_bytes)
            except InvalidEvent as error:
                rejections.append(Rejection(error.reason, value or b"", origin, now))
                continue
            assert value is not None
            events.append(IncomingEvent(event, value, received_at, origin))
        elif topic == topics.alerts:
            alert = _alert(message, received_at, origin)
            if alert is None:
                metrics.invalid_alerts.inc()
                log.warning("skipped a message on %s that is not an alert body", topic)
                continue
            batch.alerts.append(alert)
        else:
            rejections.append(_dead_letter(message, origin, now))
    return batch


def _alert(message: Message, received_at: datetime, origin: Origin) -> IncomingAlert | None:
    """The alert a message of the alerts topic carries, or ``None`` if it is not one the
    store can keep."""
    try:
        alert = alert_from_dict(orjson.loads(message.value or b"null") or {})
    except (InvalidAlert, orjson.JSONDecodeError, AttributeError, TypeError, RecursionError):
        return None
    item = IncomingAlert(alert, received_at, origin)
    return None if unstorable(item) is not None else item


def _dead_letter(message: Message, origin: Origin, now: datetime) -> Rejection:
    """The rejection a dead letter records, where its headers say it was read; as read from
    the dead-letter topic if they are missing or do not fit the store."""
    value = message.value or b""
    try:
        letter = DeadLetter.from_message(message.key, message.value, message.headers)
    except (KeyError, ValueError, UnicodeDecodeError):
        return Rejection(NO_HEADERS, value, origin, now)
    rejection = Rejection(
        letter.reason,
        letter.value or b"",
        Origin(letter.topic, letter.partition, letter.offset),
        letter.rejected_at,
    )
    return rejection if unstorable(rejection) is None else Rejection(NO_HEADERS, value, origin, now)
