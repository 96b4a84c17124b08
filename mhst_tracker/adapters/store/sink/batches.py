"""The sink's batches on their way: gathered, being written, written and awaiting their
window's refresh; each with the Kafka offsets to commit once it is safe. And a batch cut in
two, to find the input the database refuses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mhst_tracker.adapters.store.records import Batch, IncomingAlert, IncomingEvent, Rejection
from mhst_tracker.adapters.store.repository import WriteResult
from mhst_tracker.adapters.store.sink.decode import Message


class Gathered:
    """The next batch, decoded poll by poll, and the offsets to commit after its write."""

    def __init__(self) -> None:
        self.batch = Batch()
        self.offsets: dict[Any, int] = {}
        self.size = 0

    def add(self, polled: Mapping[Any, list[Message]], batch: Batch) -> None:
        """Add a poll's messages (``batch`` is their decoding)."""
        self.batch.events.extend(batch.events)
        self.batch.alerts.extend(batch.alerts)
        self.batch.rejections.extend(batch.rejections)
        for tp, records in polled.items():
            if records:
                self.offsets[tp] = records[-1].offset + 1
                self.size += len(records)


@dataclass(frozen=True)
class Pending:
    """A batch being written, and the offsets to commit once it is."""

    task: asyncio.Task[WriteResult | None]
    offsets: dict[Any, int]
    dropped: int
    """Events left out of the batch as an earlier batch held them (duplicates)."""
    started: float


class Window:
    """Batches written (events, alerts, rejections committed) whose referrals are refreshed
    together, and the offsets committed once they are."""

    def __init__(self) -> None:
        self.results: list[WriteResult] = []
        self.offsets: dict[Any, int] = {}
        self.dropped = 0
        self.opened = 0.0

    def add(self, pending: Pending, result: WriteResult) -> None:
        """Add a written batch (batches are added in the order they were read)."""
        if not self.results:
            self.opened = time.monotonic()
        self.results.append(result)
        self.offsets.update(pending.offsets)
        self.dropped += pending.dropped

    def age(self) -> float:
        """Seconds since its first batch was written (0 while it has none)."""
        return time.monotonic() - self.opened if self.results else 0.0


def halves(batch: Batch) -> tuple[Batch, Batch]:
    """A batch's inputs in two batches of about half as many each."""
    items: list[IncomingEvent | IncomingAlert | Rejection] = [
        *batch.events,
        *batch.alerts,
        *batch.rejections,
    ]
    middle = len(items) // 2
    return _batch_of(items[:middle]), _batch_of(items[middle:])


def _batch_of(items: Sequence[IncomingEvent | IncomingAlert | Rejection]) -> Batch:
    batch = Batch()
    for item in items:
        if isinstance(item, IncomingEvent):
            batch.events.append(item)
        elif isinstance(item, IncomingAlert):
            batch.alerts.append(item)
        else:
            batch.rejections.append(item)
    return batch
