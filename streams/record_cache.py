"""Decoded referral records of the partitions a worker owns, so a hot referral is not
decoded from the table on every message.

The table stays the source of truth: every change is still written to it (and so to its
changelog); the cache only saves the read and the decode. It holds at most ``capacity``
records (least recently used evicted first), forgets a partition when the partition is
revoked or assigned again (another worker may have changed it meanwhile), and forgets a key
whose processing failed half-way (the record may have been changed in memory but not
stored).
"""

from __future__ import annotations

from collections import OrderedDict

from streams.tracking import ReferralRecord


class RecordCache:
    """A bounded LRU map from referral key to its decoded :class:`ReferralRecord`."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError("a record cache's capacity cannot be negative")
        self.capacity = capacity
        self._records: OrderedDict[bytes, ReferralRecord] = OrderedDict()

    def get(self, key: bytes) -> ReferralRecord | None:
        """The cached record of ``key``, now the most recently used, or ``None``."""
        record = self._records.get(key)
        if record is not None:
            self._records.move_to_end(key)
        return record

    def put(self, key: bytes, record: ReferralRecord) -> None:
        """Remember ``record`` as ``key``'s current value (the one just stored)."""
        if self.capacity == 0:
            return
        self._records[key] = record
        self._records.move_to_end(key)
        while len(self._records) > self.capacity:
            self._records.popitem(last=False)

    def discard(self, key: bytes) -> None:
        """Forget ``key`` (its processing failed; the table has its last stored value)."""
        self._records.pop(key, None)

    def drop(self, partitions: set[int]) -> None:
        """Forget every record of ``partitions``."""
        if not partitions:
            return
        stale = [key for key, record in self._records.items() if record.partition in partitions]
        for key in stale:
            del self._records[key]

    def __len__(self) -> int:
        """How many records are cached."""
        return len(self._records)
