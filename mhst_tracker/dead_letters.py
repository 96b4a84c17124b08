"""Dead letters: rejected messages, kept with the reason they were rejected and their origin.

A rejected message is re-published on ``mhst.referral-events.dlq`` with its **original key
and value, unchanged** whenever the dead-letter topic can hold it whole, and these headers,
all UTF-8:

=====================  ==========================================================
``mhst-reason``        why it was rejected (``occurred_at has no UTC offset``)
``mhst-source-topic``  the topic it was read from
``mhst-source-partition``, ``mhst-source-offset``  where it was read, decimal
``mhst-rejected-at``   when the worker rejected it, RFC 3339 (the worker's clock)
=====================  ==========================================================

The broker accepts a message as large as its topic's ``max.message.bytes``, and the copy
adds headers, so a message near that size cannot be copied whole. :meth:`DeadLetter.fitted`
then cuts the value (and a key of more than :data:`KEY_KEPT` bytes) to fit, and says so:
``mhst-value-length`` and ``mhst-value-sha256`` (``mhst-key-length``, ``mhst-key-sha256``)
give the full length and the SHA-256 (hex) of the full bytes. A dead letter without them is
the whole message.

The reason never quotes the referral id (the engine's reasons do not).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

REASON = "mhst-reason"
SOURCE_TOPIC = "mhst-source-topic"
SOURCE_PARTITION = "mhst-source-partition"
SOURCE_OFFSET = "mhst-source-offset"
REJECTED_AT = "mhst-rejected-at"
VALUE_LENGTH = "mhst-value-length"
VALUE_SHA256 = "mhst-value-sha256"
KEY_LENGTH = "mhst-key-length"
KEY_SHA256 = "mhst-key-sha256"

KEY_KEPT: Final = 256
"""Bytes of a key kept when a dead letter is cut and the key is longer than this."""
BATCH_OVERHEAD: Final = 61 + 21
"""A record batch's header plus a record's largest fixed overhead (Kafka's v2 format):
with :func:`record_size`, an upper bound of a batch holding one record."""
MIN_LIMIT: Final = 4096
"""The smallest message limit a dead letter can always be fitted into."""


@dataclass(frozen=True)
class Cut:
    """A key or value dead-lettered truncated: its full length and the SHA-256 of it."""

    length: int
    sha256: str

    @classmethod
    def of(cls, data: bytes) -> Cut:
        """The full length and digest of ``data``."""
        return cls(len(data), hashlib.sha256(data).hexdigest())


@dataclass(frozen=True)
class DeadLetter:
    """One rejected message and where it came from.

    ``key_cut`` and ``value_cut`` are set when ``key`` and ``value`` are only the start of
    the message's key and value.
    """

    reason: str
    topic: str
    partition: int
    offset: int
    rejected_at: datetime
    key: bytes | None
    value: bytes | None
    key_cut: Cut | None = None
    value_cut: Cut | None = None

    def headers(self) -> list[tuple[str, bytes]]:
        """The Kafka headers that carry everything but the key and value."""
        headers = [
            (REASON, self.reason.encode()),
            (SOURCE_TOPIC, self.topic.encode()),
            (SOURCE_PARTITION, str(self.partition).encode()),
            (SOURCE_OFFSET, str(self.offset).encode()),
            (REJECTED_AT, self.rejected_at.isoformat().encode()),
        ]
        for cut, length, digest in (
            (self.key_cut, KEY_LENGTH, KEY_SHA256),
            (self.value_cut, VALUE_LENGTH, VALUE_SHA256),
        ):
            if cut is not None:
                headers += [(length, str(cut.length).encode()), (digest, cut.sha256.encode())]
        return headers

    def size(self) -> int:
        """An upper bound of this dead letter's size on the broker, as a batch of one."""
        return BATCH_OVERHEAD + record_size(self.key, self.value, self.headers())

    def fitted(self, limit: int) -> DeadLetter:
        """This dead letter, cut if need be so that :meth:`size` is at most ``limit``.

        ``ValueError`` if ``limit`` is below :data:`MIN_LIMIT` and the letter does not fit.
        """
        if self.size() <= limit:
            return self
        if limit < MIN_LIMIT:
            raise ValueError(f"a dead letter needs a message limit of at least {MIN_LIMIT} bytes")
        keyed = self
        if self.key is not None and len(self.key) > KEY_KEPT:
            keyed = dataclasses.replace(self, key=self.key[:KEY_KEPT], key_cut=Cut.of(self.key))
            if keyed.size() <= limit:
                return keyed
        value = self.value or b""
        empty = dataclasses.replace(keyed, value=b"", value_cut=Cut.of(value))
        room = limit - empty.size() - _varint_size(limit)  # the value's length grows too
        return dataclasses.replace(empty, value=value[:room])

    @classmethod
    def from_message(
        cls,
        key: bytes | None,
        value: bytes | None,
        headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes],
    ) -> DeadLetter:
        """Read a DLQ message back (``KeyError`` if a header is missing)."""
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        fields = {name: raw.decode() for name, raw in pairs}
        return cls(
            reason=fields[REASON],
            topic=fields[SOURCE_TOPIC],
            partition=int(fields[SOURCE_PARTITION]),
            offset=int(fields[SOURCE_OFFSET]),
            rejected_at=datetime.fromisoformat(fields[REJECTED_AT]),
            key=key,
            value=value,
            key_cut=_cut(fields, KEY_LENGTH, KEY_SHA256),
            value_cut=_cut(fields, VALUE_LENGTH, VALUE_SHA256),
        )


def too_small(topic: str, limit: int) -> str | None:
    """Why a dead-letter topic whose messages are at most ``limit`` bytes cannot be used
    (``None`` if it can): it cannot hold even a cut dead letter."""
    if limit >= MIN_LIMIT:
        return None
    return (
        f"topic {topic} accepts messages of at most {limit} bytes;"
        f" dead letters need max.message.bytes of at least {MIN_LIMIT}"
    )


def record_size(
    key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes]]
) -> int:
    """The bytes a record's key, value and headers take in Kafka's record format (v2)."""
    pairs = list(headers)
    size = _bytes_size(key) + _bytes_size(value) + _varint_size(len(pairs))
    for name, raw in pairs:
        size += _bytes_size(name.encode()) + _bytes_size(raw)
    return size


def _bytes_size(data: bytes | None) -> int:
    """Bytes of a length-prefixed field (a null is one byte)."""
    return 1 if data is None else _varint_size(len(data)) + len(data)


def _varint_size(number: int) -> int:
    """Bytes of a non-negative number as Kafka's zigzag varint."""
    zigzag = number << 1
    size = 1
    while zigzag >= 0x80:
        zigzag >>= 7
        size += 1
    return size


def _cut(fields: Mapping[str, str], length: str, digest: str) -> Cut | None:
    if length not in fields:
        return None
    return Cut(int(fields[length]), fields[digest])
