"""The deadline index: which referrals of a partition need looking at, by due moment.

One min-heap of ``(moment, key)`` per partition plus each key's current moment. Setting a
key's deadline pushes a new entry and leaves the old one in the heap, where it is skipped
(it is no longer the key's current deadline) and dropped once it reaches the top
(:meth:`earliest`). So setting a deadline costs O(log n), and :meth:`due_by` lists the k keys
due by a moment in O(k) (plus the superseded entries passed over): in a min-heap the entries
at or before a moment form a subtree at the root, so the walk never leaves it, and a timer
tick never walks the open referrals. Moments are POSIX seconds.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable


class DeadlineIndex:
    """Per-partition deadline heaps for the partitions this worker owns."""

    def __init__(self) -> None:
        self._heaps: dict[int, list[tuple[float, bytes]]] = {}
        self._current: dict[int, dict[bytes, float]] = {}

    def schedule(self, partition: int, key: bytes, moment: float | None) -> None:
        """Make ``moment`` the key's deadline (``None``: nothing more to wait for)."""
        current = self._current.setdefault(partition, {})
        if moment is None:
            current.pop(key, None)
            return
        if current.get(key) == moment:
            return
        current[key] = moment
        heapq.heappush(self._heaps.setdefault(partition, []), (moment, key))

    def earliest(self, partition: int) -> float | None:
        """The partition's earliest current deadline (superseded heads are dropped on the way)."""
        heap = self._heaps.get(partition)
        if not heap:
            return None
        current = self._current[partition]
        while heap:
            moment, key = heap[0]
            if current.get(key) == moment:
                return moment
            heapq.heappop(heap)
        return None

    def due_by(self, partition: int, moment: float, limit: int | None = None) -> list[bytes]:
        """The keys whose current deadline is at or before ``moment`` (at most ``limit`` of
        them, in no particular order); nothing is removed."""
        heap = self._heaps.get(partition)
        if not heap:
            return []
        current = self._current[partition]
        due: dict[bytes, None] = {}
        stack = [0]
        size = len(heap)
        while stack:
            position = stack.pop()
            if position >= size or heap[position][0] > moment:
                continue
            entry_moment, key = heap[position]
            if current.get(key) == entry_moment:
                due[key] = None
                if limit is not None and len(due) >= limit:
                    break
            stack.append(2 * position + 1)
            stack.append(2 * position + 2)
        return list(due)

    def replace(self, partition: int, entries: Iterable[tuple[bytes, float]]) -> None:
        """Index ``partition`` afresh from ``(key, moment)`` pairs (after an assignment)."""
        current = dict(entries)
        heap = [(moment, key) for key, moment in current.items()]
        heapq.heapify(heap)
        self._current[partition] = current
        self._heaps[partition] = heap

    def drop(self, partition: int) -> None:
        """Forget a partition (revoked from this worker)."""
        self._current.pop(partition, None)
        self._heaps.pop(partition, None)

    def partitions(self) -> set[int]:
        """The partitions indexed."""
        return set(self._current)

    def deadline(self, partition: int, key: bytes) -> float | None:
        """The key's current deadline, if any."""
        return self._current.get(partition, {}).get(key)

    def __len__(self) -> int:
        """How many keys have a deadline."""
        return sum(len(current) for current in self._current.values())
