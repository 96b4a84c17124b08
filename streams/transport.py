"""Faust's Kafka transport: stream partitions with no committed offset are read from the start.

Around a rebalance Faust discards what its client fetched or buffered for the stream
partitions (what is fetched while a partition is paused for the table's restore is dropped
when it reaches Faust), and relies on seeking every partition back to its committed offset
afterwards ("Seek stream partitions to committed offsets"). A partition with no committed
offset in the group (a group that has only just started, or a worker killed before its first
commit) is not moved by that seek (aiokafka's ``seek_to_committed`` seeks only to a committed
offset above 0), so its position stays wherever the discarded fetches left it, often the log
end, and its records are never processed.

:class:`StreamConsumer` completes that seek: every assigned partition that is not a table's
changelog and has no committed offset goes back to its first offset, which is what
``consumer_auto_offset_reset="earliest"`` means. The worker seeks twice after a rebalance:
once when its table is restored, before Faust resumes the stream partitions (so that what
they deliver first is their beginning, in order), and once more within Faust's own seek,
after they are resumed (a fetch that was already under way can still hand the first seek's
records to Faust while the partitions are paused, and they are dropped). Reading such a
partition again is safe for the worker: a duplicate event changes nothing and an alert
already raised is not raised again.

Where each stream partition was sought is kept (:attr:`StreamConsumer.sought`): until the
agent has read an event there, it is how far the worker's table holds the partition's
events (:mod:`mhst_tracker.tracking.catchup`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from faust.transport.drivers import aiokafka as driver
from faust.types import TP, ConsumerT

log = logging.getLogger(__name__)


class StreamConsumer(driver.Consumer):
    """Faust's aiokafka consumer; seeking to the committed offsets also rewinds the
    uncommitted stream partitions to their start."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sought: dict[TP, int] = {}
        """Where each stream partition was last sought (its committed offset or its first)."""

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Seek to the committed offsets, and uncommitted stream partitions to the first."""
        committed = await super().seek_to_committed()
        streams = [tp for tp in self.assignment() if not self._is_changelog_tp(tp)]
        uncommitted = [tp for tp in streams if not committed.get(tp)]
        earliest: Mapping[TP, int] = {}
        if uncommitted:
            earliest = await self.earliest_offsets(*uncommitted)
            await self.seek_wait({tp: earliest.get(tp) or 0 for tp in uncommitted})
            log.info(
                "%d stream partitions without a committed offset read from their start",
                len(uncommitted),
            )
        self.sought = {tp: committed.get(tp) or earliest.get(tp) or 0 for tp in streams}
        return committed


class StreamTransport(driver.Transport):
    """Faust's aiokafka transport with :class:`StreamConsumer`."""

    Consumer: ClassVar[type[ConsumerT]] = StreamConsumer
