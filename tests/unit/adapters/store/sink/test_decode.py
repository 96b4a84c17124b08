"""Messages into the store's inputs, without a broker: whatever is wrong with one message
becomes its rejection (or a skipped alert), with a reason that quotes nothing of it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from prometheus_client import CollectorRegistry

from mhst_tracker.adapters.metrics import SinkMetrics
from mhst_tracker.adapters.store.sink.decode import NO_HEADERS, decode
from mhst_tracker.config import Settings
from mhst_tracker.dead_letters import DeadLetter

TOPICS = Settings(topic_prefix="t.").topics
SECRET = "9434765919"
VALID = {
    "event_id": "e1",
    "type": "referral_received",
    "referral_id": "R1",
    "occurred_at": "2026-09-01T09:00:00+01:00",
    "team_id": "T1",
}


@dataclass
class Message:
    topic: str
    value: bytes | None
    key: bytes | None = b"R1"
    partition: int = 0
    offset: int = 0
    timestamp: int = 1_780_000_000_000
    headers: Sequence[tuple[str, bytes]] = field(default_factory=list)


def _event(value: bytes | None, key: bytes | None = b"R1", offset: int = 0) -> Message:
    return Message(TOPICS.events, value, key, offset=offset)


def _decode(*messages: Message) -> tuple[list[str], list[str], SinkMetrics]:
    metrics = SinkMetrics(CollectorRegistry())
    batch = decode(list(messages), TOPICS, 1_000_000, metrics)
    return (
        [item.event.event_id for item in batch.events],
        [item.reason for item in batch.rejections],
        metrics,
    )


def test_a_message_nested_past_any_decoder_s_limit_is_rejected_and_the_rest_kept() -> None:
    nested = orjson.dumps(VALID)[:-1] + b',"x":' + b"[" * 5000 + b"]" * 5000 + b"}"
    events, reasons, _ = _decode(
        _event(orjson.dumps(VALID), offset=0),
        _event(nested, offset=1),
        _event(orjson.dumps(VALID | {"event_id": "e2"}), offset=2),
    )
    assert events == ["e1", "e2"]
    assert reasons == ["event nested deeper than 32 levels"]


def test_an_event_that_would_not_fit_the_store_is_rejected_by_the_contract() -> None:
    long_team = VALID | {"event_id": "e2", "team_id": "T" * 65}
    long_school = VALID | {"event_id": "e3", "school_id": SECRET * 7}
    events, reasons, _ = _decode(
        _event(orjson.dumps(long_team)), _event(orjson.dumps(long_school)), _event(b"[]")
    )
    assert events == []
    assert reasons[:2] == [
        "team_id longer than 64 characters",
        "school_id longer than 64 characters",
    ]
    assert all(SECRET not in reason for reason in reasons)


def test_an_alert_that_is_not_one_is_skipped_and_counted() -> None:
    nested = b"[" * 5000 + b"]" * 5000
    not_alerts = [b"[1]", b'"text"', b"\xff", nested, b'{"alert_id": 1}', None]
    metrics = _decode(*(Message(TOPICS.alerts, value) for value in not_alerts))[2]
    assert metrics.registry.get_sample_value("mhst_store_sink_invalid_alerts_total") == len(
        not_alerts
    )


def test_a_dead_letter_whose_headers_do_not_fit_is_kept_as_read() -> None:
    now = datetime(2026, 9, 1, tzinfo=UTC)
    fits = DeadLetter("missing referral_id", TOPICS.events, 1, 7, now, b"R1", b"{}")
    too_long = DeadLetter("missing referral_id", "x" * 300, 1, 7, now, b"R1", b"{}")
    far = DeadLetter("missing referral_id", TOPICS.events, 2**40, 7, now, b"R1", b"{}")
    nul = DeadLetter("reason\x00", TOPICS.events, 1, 7, now, b"R1", b"{}")
    naive = [
        (name, b"2026-09-01T00:00:00" if name == "mhst-rejected-at" else raw)
        for name, raw in fits.headers()
    ]
    letters = [
        Message(TOPICS.dlq, b"{}", headers=fits.headers()),
        *(Message(TOPICS.dlq, b"{}", headers=letter.headers()) for letter in (too_long, far, nul)),
        Message(TOPICS.dlq, b"{}", headers=naive),
        Message(TOPICS.dlq, b"{}"),
    ]
    metrics = SinkMetrics(CollectorRegistry())
    batch = decode(letters, TOPICS, 1_000_000, metrics)
    assert [item.reason for item in batch.rejections] == ["missing referral_id"] + [NO_HEADERS] * 5
    assert batch.rejections[0].origin.source == TOPICS.events
    assert {item.origin.source for item in batch.rejections[1:]} == {TOPICS.dlq}
