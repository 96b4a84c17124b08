"""The ids of the events the sink has lately sent to be written, so a later batch leaves
them out (they are stored, or being stored, by an earlier one)."""

from __future__ import annotations

from collections.abc import Iterable


class RecentEventIds:
    """Two generations of up to ``capacity`` ids each, so the last ``capacity`` to twice as
    many are remembered (at about 120 bytes an id)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.current: set[str] = set()
        self.previous: set[str] = set()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self.current or event_id in self.previous

    def add(self, event_ids: Iterable[str]) -> None:
        """Remember these ids, forgetting the older generation once the newer is full."""
        self.current.update(event_ids)
        if len(self.current) >= self.capacity:
            self.previous, self.current = self.current, set()
