"""Every door reads events alike: the same documents accepted, the same reasons for the rest.

The stream workers (:func:`mhst_tracker.pipeline.accept`), the store sink's decoding,
``import``'s reading of a JSONL file, ``replay`` and the ingestion API's intake all read
events with the contract's one reader; whatever Hypothesis sends them, each accepts exactly
the events :func:`~mhst_tracker.domain.events.parse_event` accepts and rejects the rest with
its reason (the API, which also asks every event for a team of the token's, refuses the
contract's events without one for that reason).
"""

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from mhst_tracker.adapters.metrics import SinkMetrics
from mhst_tracker.adapters.store.importer import read_jsonl
from mhst_tracker.adapters.store.records import IncomingEvent, Rejection
from mhst_tracker.adapters.store.sink.decode import decode
from mhst_tracker.api.intake import TEAM_REQUIRED, Accepted, IntakeRules, judge
from mhst_tracker.config import Settings
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.events import Event, parse_event
from mhst_tracker.pipeline import accept
from mhst_tracker.replay import Replayer
from tests.unit.domain.strategies import event_documents

TOPICS = Settings().topics
MAX_BYTES = 400
NOW = datetime(2026, 9, 1, tzinfo=UTC)

Outcome = Event | str
"""The event a door accepted, or the reason it gave."""


@dataclass
class Message:
    topic: str
    value: bytes | None
    key: bytes | None
    offset: int
    partition: int = 0
    timestamp: int = 1_780_000_000_000
    headers: Sequence[tuple[str, bytes]] = field(default_factory=list)


def contract(raw: bytes) -> Outcome:
    try:
        return parse_event(raw, MAX_BYTES)
    except InvalidEvent as rejection:
        return rejection.reason


def worker(raw: bytes, key: bytes) -> Outcome:
    try:
        return accept(key, raw, MAX_BYTES)
    except InvalidEvent as rejection:
        return rejection.reason


def sink(raws: list[bytes], keys: list[bytes]) -> list[Outcome]:
    messages = [
        Message(TOPICS.events, raw, key, offset)
        for offset, (raw, key) in enumerate(zip(raws, keys, strict=True))
    ]
    batch = decode(messages, TOPICS, MAX_BYTES, SinkMetrics(CollectorRegistry()))
    items: list[IncomingEvent | Rejection] = [*batch.events, *batch.rejections]
    items.sort(key=lambda item: item.origin.offset or 0)
    return [item.event if isinstance(item, IncomingEvent) else item.reason for item in items]


def imported(raws: list[bytes]) -> list[Outcome]:
    items = read_jsonl(io.BytesIO(b"\n".join(raws) + b"\n"), "events.jsonl", NOW, MAX_BYTES)
    return [item.event if isinstance(item, IncomingEvent) else item.reason for item in items]


def api(raws: list[bytes], teams: frozenset[str]) -> list[Outcome]:
    verdicts = judge(raws, IntakeRules(max_event_bytes=MAX_BYTES), teams)
    return [v.event if isinstance(v, Accepted) else v.reason for v in verdicts]


def replayed(raws: list[bytes]) -> tuple[list[str], int]:
    """The reasons replay lists, and how many events it folded."""
    replayer = Replayer(MAX_BYTES)
    replayer.feed(raws)
    folded = sum(len(clock._event_ids) for clock in replayer.clocks.values())
    return [rejected.reason for rejected in replayer.rejected], folded + replayer.duplicates


def as_line(document: dict[str, Any]) -> bytes:
    """One JSONL line of a document (a line holds no raw line break: JSON escapes it)."""
    return orjson.dumps(document)


@settings(max_examples=200)
@given(
    documents=st.lists(event_documents(), min_size=1, max_size=8),
    padding=st.lists(st.integers(0, 2 * MAX_BYTES), min_size=8, max_size=8),
)
def test_every_door_accepts_and_rejects_exactly_as_the_contract(
    documents: list[dict[str, Any]], padding: list[int]
) -> None:
    # Some documents padded past the size limit with a field outside the contract.
    raws = [
        as_line(document | {"notes": "x" * pad})
        for document, pad in zip(documents, padding, strict=False)
    ]
    # Each message keyed as a sender would: by its referral id (a key the contract's
    # reader never sees, so it cannot change what the reader decides).
    keys = [str(document.get("referral_id")).encode() for document in documents]
    expected = [contract(raw) for raw in raws]
    assert [worker(raw, key) for raw, key in zip(raws, keys, strict=True)] == expected
    assert sink(raws, keys) == expected
    assert imported(raws) == expected
    teams = frozenset(str(document.get("team_id")) for document in documents)
    assert api(raws, teams) == [
        TEAM_REQUIRED if isinstance(outcome, Event) and outcome.team_id is None else outcome
        for outcome in expected
    ]
    reasons, folded = replayed(raws)
    assert reasons == [outcome for outcome in expected if isinstance(outcome, str)]
    assert folded == sum(1 for outcome in expected if isinstance(outcome, Event))
