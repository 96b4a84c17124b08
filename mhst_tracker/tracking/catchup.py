"""Alerts are decided as of the events available: has a partition been read far enough?

A breach or at-risk decision about a referral (by the deadline timer, or when one of its
events is processed) is made only once the worker has read the referral's events partition
up to the end offset the broker had at the moment of the decision, so that the referral's
state includes every event that was already in Kafka. Until then the decision is deferred.
A restarted worker, a worker after an outage and a worker loading history therefore raise
no breach that events waiting unread in the partition would disprove.

:class:`CatchUp` keeps, per owned events partition:

* the **position**: the offset after the last event the agent read there, or, before it
  has read any since the partition was assigned, where the stream was sought then (the
  committed offset: the table holds every event below it);
* the **round** of deferred timer decisions, if one is open: the moment M it began and the
  broker's end offset at M. Once the position reaches that offset, the decisions due by M
  are made together, as of M. The target is fixed when the round begins, not the moving
  end offset, so a busy partition is not starved; decisions that become due after M wait
  for the next round.

End offsets come from the :class:`Positions` port. The client's last fetched end offset
(no request) tells when a partition is certainly behind; the broker's end offset (one
request) decides. The timer asks it once per round; an event whose decision would raise
alerts asks it only when the partition is not certainly behind, so an event read while a
backlog waits behind it defers its decision without a request, and in steady state only an
event that raises an alert waits for one request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

LOGGED_AFTER: Final = 1.0
"""Seconds a round must have waited for its partition to be logged when its decisions are
made (shorter waits, such as a midnight's on a busy partition, are logged at debug level)."""

log = logging.getLogger(__name__)


class Positions(Protocol):
    """What the Kafka client knows of the events partitions the worker owns."""

    def fetched_end(self, partition: int) -> int | None:
        """The partition's end offset as of the client's last fetch (``None`` before one)."""
        ...

    def sought(self, partition: int) -> int | None:
        """Where the stream was sought when the partition was assigned (``None``: not yet)."""
        ...

    async def broker_ends(self, partitions: Collection[int]) -> dict[int, int] | None:
        """The broker's end offsets of ``partitions`` now, or ``None`` if it did not answer."""
        ...


@dataclass(frozen=True, slots=True)
class Round:
    """Deferred timer decisions of one partition: those due by ``moment``, made as of it
    once the partition is read to ``target``."""

    moment: datetime
    target: int
    began: float
    """``time.monotonic()`` when the round began."""


class CatchUp:
    """Positions and rounds of the events partitions a worker owns."""

    def __init__(self, positions: Positions) -> None:
        self.positions = positions
        self._read: dict[int, int] = {}
        self._rounds: dict[int, Round] = {}

    def read(self, partition: int, offset: int) -> None:
        """The agent read the event at ``offset`` (processed or rejected)."""
        if offset >= self._read.get(partition, 0):
            self._read[partition] = offset + 1

    def position(self, partition: int) -> int | None:
        """The offset up to which the table holds the partition's events (``None``: unknown)."""
        sought = self.positions.sought(partition)
        read = self._read.get(partition)
        if sought is None or read is None:
            return read if sought is None else sought
        return max(read, sought)

    def behind(self, partition: int) -> bool:
        """Whether the partition certainly has events not yet read (asks nothing)."""
        position = self.position(partition)
        fetched = self.positions.fetched_end(partition)
        if position is None or fetched is None:
            return True
        round_ = self._rounds.get(partition)
        return position < fetched or (round_ is not None and position < round_.target)

    async def caught_up(self, partition: int) -> bool:
        """Whether the partition is read to the broker's end offset now (the agent asks this
        before raising alerts about an event)."""
        if self.behind(partition):
            return False
        ends = await self.positions.broker_ends([partition])
        return ends is not None and self._reached(partition, ends[partition])

    async def ready(self, partitions: Collection[int], now: datetime) -> dict[int, datetime]:
        """Of ``partitions`` (each with timer decisions due), those whose due decisions can be
        made, each with the moment they are made as of (decisions due by then).

        A partition without a round begins one at ``now`` with the broker's end offsets
        (one request for all of them); one whose position has reached its round's target is
        ready. If the broker does not answer, no round begins: they are asked again next time.
        """
        ready: dict[int, datetime] = {}
        beginning: list[int] = []
        for partition in partitions:
            round_ = self._rounds.get(partition)
            if round_ is None:
                beginning.append(partition)
            elif self._reached(partition, round_.target):
                ready[partition] = round_.moment
        if not beginning:
            return ready
        ends = await self.positions.broker_ends(beginning)
        if ends is None:
            return ready
        began = time.monotonic()
        for partition in beginning:
            if self.position(partition) is None:
                continue  # assigned, not yet sought: no position to compare
            round_ = self._rounds[partition] = Round(now, ends[partition], began)
            if self._reached(partition, round_.target):
                ready[partition] = now
            else:
                log.debug(
                    "partition %d: decisions due deferred until offset %d is read",
                    partition,
                    round_.target,
                )
        return ready

    def _reached(self, partition: int, target: int) -> bool:
        position = self.position(partition)
        return position is not None and position >= target

    def finished(self, partition: int) -> None:
        """The decisions of the partition's round are all made: the round is closed."""
        round_ = self._rounds.pop(partition, None)
        if round_ is None:
            return
        waited = time.monotonic() - round_.began
        if waited >= LOGGED_AFTER:
            log.info(
                "partition %d read to offset %d: deferred decisions made after %.1f s",
                partition,
                round_.target,
                waited,
            )

    def forget(self, partition: int) -> None:
        """The partition is no longer owned (or is assigned afresh)."""
        self._read.pop(partition, None)
        self._rounds.pop(partition, None)
