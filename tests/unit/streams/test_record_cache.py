"""The worker's cache of decoded referral records: bounded, LRU, forgets partitions."""

from __future__ import annotations

import pytest

from mhst_tracker.domain.clock import ReferralClock
from streams.record_cache import RecordCache
from streams.tracking import ReferralRecord


def _record(name: str, partition: int) -> ReferralRecord:
    return ReferralRecord(ReferralClock(name), partition)


def test_get_returns_what_was_put_and_nothing_else() -> None:
    cache = RecordCache(10)
    record = _record("R1", 0)
    cache.put(b"R1", record)
    assert cache.get(b"R1") is record
    assert cache.get(b"R2") is None


def test_least_recently_used_is_evicted_beyond_capacity() -> None:
    cache = RecordCache(2)
    cache.put(b"A", _record("A", 0))
    cache.put(b"B", _record("B", 0))
    assert cache.get(b"A") is not None  # A is now more recent than B
    cache.put(b"C", _record("C", 0))
    assert len(cache) == 2
    assert cache.get(b"B") is None
    assert cache.get(b"A") is not None
    assert cache.get(b"C") is not None


def test_drop_forgets_only_the_given_partitions() -> None:
    cache = RecordCache(10)
    for number in range(6):
        cache.put(f"R{number}".encode(), _record(f"R{number}", number % 3))
    cache.drop({0, 2})
    assert [cache.get(f"R{n}".encode()) is not None for n in range(6)] == [
        False,
        True,
        False,
        False,
        True,
        False,
    ]


def test_discard_forgets_one_key() -> None:
    cache = RecordCache(10)
    cache.put(b"A", _record("A", 0))
    cache.put(b"B", _record("B", 0))
    cache.discard(b"A")
    cache.discard(b"missing")
    assert cache.get(b"A") is None
    assert cache.get(b"B") is not None


def test_capacity_zero_caches_nothing_and_negative_is_refused() -> None:
    cache = RecordCache(0)
    cache.put(b"A", _record("A", 0))
    assert cache.get(b"A") is None
    with pytest.raises(ValueError, match="negative"):
        RecordCache(-1)
