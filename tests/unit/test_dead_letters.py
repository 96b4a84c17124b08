"""Dead letters keep the original bytes and carry the reason and origin in headers; one too
large for its topic is cut to fit and carries its full length and SHA-256."""

import hashlib
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from hypothesis import given
from hypothesis import strategies as st

from mhst_tracker.dead_letters import (
    BATCH_OVERHEAD,
    KEY_KEPT,
    MIN_LIMIT,
    Cut,
    DeadLetter,
    record_size,
)

LETTER = DeadLetter(
    reason="event larger than 65536 bytes",
    topic="mhst.referral-events",
    partition=3,
    offset=42,
    rejected_at=datetime(2026, 9, 1, 8, tzinfo=UTC),
    key=b"R1",
    value=b"{}",
)


def test_a_dead_letter_reads_back_from_its_headers() -> None:
    letter = replace(LETTER, key=b"\xff", value=b"\x00not json")
    assert DeadLetter.from_message(letter.key, letter.value, letter.headers()) == letter


@given(
    st.none() | st.binary(max_size=300),
    st.none() | st.binary(max_size=20_000),
    st.lists(st.tuples(st.text(max_size=20), st.binary(max_size=200)), max_size=8),
)
def test_record_size_is_kafkas_record_size(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
) -> None:
    expected = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)
    assert BATCH_OVERHEAD + record_size(key, value, headers) == expected


def test_a_letter_that_fits_is_sent_whole() -> None:
    letter = replace(LETTER, value=b"x" * 10_000)
    assert letter.fitted(letter.size()) is letter
    assert letter.value_cut is None
    assert DeadLetter.from_message(letter.key, letter.value, letter.headers()) == letter


@given(
    st.integers(MIN_LIMIT, 1_100_000),
    st.integers(0, 1_200_000),
    st.sampled_from([None, b"R1", b"k" * 5000]),
)
def test_a_letter_too_large_is_cut_to_the_limit_and_says_what_it_was(
    limit: int, length: int, key: bytes | None
) -> None:
    value = bytes(range(256)) * (length // 256) + b"v" * (length % 256)
    letter = replace(LETTER, key=key, value=value)
    fitted = letter.fitted(limit)
    assert fitted.size() <= limit
    if letter.size() <= limit:
        assert fitted is letter
        return
    assert fitted.value is not None
    assert value.startswith(fitted.value)
    if fitted.value_cut is not None:
        assert fitted.value_cut == Cut(length, hashlib.sha256(value).hexdigest())
        assert limit - fitted.size() < 16  # what is kept is as much as fits
    else:
        assert fitted.value == value
    if key is not None and len(key) > KEY_KEPT:
        assert fitted.key == key[:KEY_KEPT]
        assert fitted.key_cut == Cut(len(key), hashlib.sha256(key).hexdigest())
    else:
        assert fitted.key == key
        assert fitted.key_cut is None
    read = DeadLetter.from_message(fitted.key, fitted.value, fitted.headers())
    assert read == fitted
    assert (read.reason, read.partition, read.offset) == (LETTER.reason, 3, 42)


def test_a_limit_below_the_minimum_is_refused_for_a_letter_that_does_not_fit() -> None:
    letter = replace(LETTER, value=b"x" * MIN_LIMIT)
    with pytest.raises(ValueError, match="at least 4096"):
        letter.fitted(MIN_LIMIT - 1)
