"""The sink's memory of the events it has sent to be written (pure code, no broker)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mhst_tracker.adapters.store.sink.recent import RecentEventIds


def test_the_last_capacity_ids_are_remembered_and_older_generations_forgotten() -> None:
    recent = RecentEventIds(capacity=3)
    recent.add(["e1", "e2"])
    assert [event_id in recent for event_id in ("e1", "e2", "e3")] == [True, True, False]
    recent.add(["e3"])  # the first generation is full: it becomes the older one
    recent.add(["e4", "e5", "e6"])  # the second is full: the first is forgotten
    assert [event_id in recent for event_id in ("e1", "e2", "e3", "e4", "e5", "e6")] == [
        False,
        False,
        False,
        True,
        True,
        True,
    ]


@given(
    st.lists(st.lists(st.text(min_size=1, max_size=3), max_size=5), max_size=30),
    st.integers(min_value=1, max_value=8),
)
def test_at_least_the_last_capacity_ids_added_are_remembered(
    lots: list[list[str]], capacity: int
) -> None:
    recent = RecentEventIds(capacity)
    added: list[str] = []
    largest = 0
    for lot in lots:
        largest = max(largest, len(lot))
        recent.add(lot)
        added.extend(lot)
        distinct_latest = list(dict.fromkeys(reversed(added)))[:capacity]
        assert all(event_id in recent for event_id in distinct_latest)
        assert len(recent.current) < capacity
        assert len(recent.previous) < capacity + largest  # memory stays bounded
