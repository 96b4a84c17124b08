"""The rows both backends write: every value in the column the SQLAlchemy table names."""

from __future__ import annotations

from datetime import UTC, date, datetime

from mhst_tracker.adapters.store import backend
from mhst_tracker.adapters.store.backend import PROJECTION_COLUMNS, event_rows, projection_row
from mhst_tracker.adapters.store.postgres import PostgresBackend
from mhst_tracker.adapters.store.records import IncomingEvent, Origin
from mhst_tracker.adapters.store.repository import BACKENDS
from mhst_tracker.adapters.store.sqlite import SqliteBackend
from mhst_tracker.domain.alerts import next_deadline
from mhst_tracker.domain.clock import Evaluation, ReferralClock
from mhst_tracker.domain.events import event_to_json, parse_event
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from tests.adapters.store.conftest import event as body

NOW = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)


def _columns(table: object) -> set[str]:
    return {column.name for column in table.columns} - {"id"}  # type: ignore[attr-defined]


def test_the_column_lists_cover_each_table() -> None:
    assert set(backend.EVENT_COLUMNS) == _columns(backend.EVENTS)
    projection = set(PROJECTION_COLUMNS) | set(backend.PROJECTION_STAMPS)
    assert projection == _columns(backend.REFERRALS)
    # What a write adds to the fields read off its inputs, or leaves empty.
    alerts = set(backend.ALERT_FIELDS) | {"recorded_at", "delivery_status", "delivered_at"}
    assert alerts == _columns(backend.ALERTS)
    assert set(backend.REJECTION_FIELDS) | {"recorded_at"} == _columns(backend.REJECTIONS)


def test_an_event_row_puts_each_value_in_its_column() -> None:
    event = parse_event(
        body(
            "e1",
            "referral_received",
            "R1",
            "2026-09-01T09:00:00+01:00",
            team_id="T1",
            school_id="S1",
        )
    )
    received = datetime(2026, 9, 1, 9, 5, tzinfo=UTC)
    item = IncomingEvent(event, event_to_json(event), received, Origin("topic", 2, 40))
    (row,) = event_rows([item], NOW)
    assert dict(zip(backend.EVENT_COLUMNS, row, strict=True)) == {
        "event_id": "e1",
        "referral_id": "R1",
        "type": "referral_received",
        "occurred_at": event.occurred_at,
        "team_id": "T1",
        "school_id": "S1",
        "payload": event_to_json(event).decode(),
        "received_at": received,
        "recorded_at": NOW,
        "source": "topic",
        "source_partition": 2,
        "source_offset": 40,
        "source_line": None,
    }


def test_a_projection_row_puts_each_value_in_its_column() -> None:
    clock = ReferralClock("R1")
    clock.apply(
        parse_event(body("r", "referral_received", "R1", "2026-09-01T09:00:00+01:00", team_id="T1"))
    )
    clock.apply(parse_event(body("a", "assessment_completed", "R1", "2026-09-01T11:00:00+01:00")))
    as_of = datetime(2026, 9, 3, 12, tzinfo=UTC)
    state = clock.state(as_of, TRAILBLAZER_4WW)
    row = dict(
        zip(
            PROJECTION_COLUMNS,
            projection_row(clock, Evaluation.of(as_of, TRAILBLAZER_4WW)),
            strict=True,
        )
    )
    assert row["referral_id"] == "R1"
    assert row["team_id"] == "T1"
    assert row["school_id"] is None
    assert row["status"] == state.status.value == "waiting_within_standard"
    assert row["received_on"] == date(2026, 9, 1)
    assert row["days_waited"] == 2
    assert row["dna_count"] == 0
    assert row["flags"] == "[]"
    assert row["at_risk_stages"] == "[]"
    assert row["next_stage"] == "allocation"
    assert row["next_due_on"] == date(2026, 9, 8)
    assert row["off_list_on"] is None
    assert row["next_deadline"] == next_deadline(state, TRAILBLAZER_4WW) is not None
    assert row["clock"].startswith('{"version":1,"referral_id":"R1"')
    assert row["stages"].startswith('{"assessment":{"due_on":"2026-09-01"')


def test_each_dialect_has_its_backend() -> None:
    assert {"postgresql": PostgresBackend, "sqlite": SqliteBackend} == BACKENDS
    assert PostgresBackend.concurrent_writers
    assert not SqliteBackend.concurrent_writers
