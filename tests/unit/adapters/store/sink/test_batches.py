"""A batch cut in two: every input in one half, and neither half empty (or the search for
the input the database refuses would not end)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from mhst_tracker.adapters.store.records import Origin, Rejection
from mhst_tracker.adapters.store.sink.batches import halves
from mhst_tracker.domain.events import event_to_json
from tests.adapters.store.conftest import event, incoming

NOW = datetime(2026, 9, 1, tzinfo=UTC)


@given(st.integers(0, 6), st.integers(0, 6))
def test_halves_split_a_batch_without_losing_or_repeating_an_input(
    events: int, rejections: int
) -> None:
    batch = incoming(
        event(f"e{n}", "allocated", "R1", "2026-09-01T10:00:00Z") for n in range(events)
    )
    batch.rejections = [
        Rejection("invalid JSON", b"{", Origin("t", 0, n), NOW) for n in range(rejections)
    ]
    first, second = halves(batch)
    assert len(first) + len(second) == len(batch)
    if len(batch) > 1:
        assert len(first) > 0
        assert len(second) > 0
    ids = [event_to_json(item.event) for half in (first, second) for item in half.events]
    assert ids == [event_to_json(item.event) for item in batch.events]
    assert [*first.rejections, *second.rejections] == batch.rejections
