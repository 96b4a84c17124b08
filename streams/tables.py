"""The worker's table ``referral-clocks`` and what follows a rebalance.

The table (RocksDB, changelog-backed, keyed by referral id) holds one
:class:`~mhst_tracker.pipeline.ReferralRecord` per referral, as bytes (Faust stores bytes
keys and values raw). After every rebalance (the table's recovery callbacks) a stream
partition with no committed offset is read again from its start (:mod:`streams.transport`),
then the tracker drops the partitions the worker no longer owns and indexes those it gained
from the table; a revoked partition is dropped at once.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator
from typing import Any, cast

import faust
from faust.types import TP, TableT

from mhst_tracker.topics import REFERRAL_TABLE
from mhst_tracker.tracking.tracker import ReferralTracker
from streams.transport import StreamConsumer


class _StoredItems(ItemsView[bytes, bytes]):
    """A table's items as its RocksDB store holds them (active partitions, raw bytes)."""

    def __init__(self, table: ReferralClocks) -> None:
        super().__init__(table)
        self.table = table

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        store: Any = self.table.data
        yield from store._iteritems()


class ReferralClocks(faust.Table[bytes, bytes]):
    """A Faust table of raw bytes whose :meth:`items` are read as stored.

    Faust's ``items()`` passes every key and value through its codec registry (four calls
    each, for values stored raw): most of the time the tracker spends indexing the deadlines
    of the partitions it gained or restating the metrics. The RocksDB store's own items of
    the active partitions are the same pairs.
    """

    def items(self) -> ItemsView[bytes, bytes]:
        if hasattr(self.data, "_iteritems"):
            return _StoredItems(self)
        return cast(ItemsView[bytes, bytes], super().items())  # memory:// in tests


def referral_table(app: faust.App, partitions: int) -> TableT[bytes, bytes]:
    """The table of referral records (its changelog: ``TopicNames.referral_changelog``)."""
    table = ReferralClocks(
        app,
        name=REFERRAL_TABLE,
        beacon=app.tables.beacon,
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
    )
    return cast(TableT[bytes, bytes], app.tables.add(table))


def follow_rebalances(
    app: faust.App, table: TableT[bytes, bytes], tracker: ReferralTracker, events: str
) -> None:
    """Seek, re-index and reload the metrics after each recovery; forget what is revoked."""

    async def seek_before_resume() -> None:
        await cast(StreamConsumer, app.consumer).seek_to_committed()  # see streams.transport

    table.on_recover(seek_before_resume)
    table.on_recover(tracker.rebuild_index)

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        (revoked,) = args
        await tracker.forget_revoked(partitions_of(revoked, events))


def partitions_of(assigned: set[TP], topic: str) -> set[int]:
    """The partitions of ``topic`` among ``assigned``."""
    return {tp.partition for tp in assigned if tp.topic == topic}
