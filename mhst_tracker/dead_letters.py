"""Dead letters: rejected messages, kept byte for byte with the reason they were rejected.

A rejected message is re-published on ``mhst.referral-events.dlq`` with its **original key
and value, unchanged** (so nothing is lost, whatever the bytes are, and the DLQ message is no
larger than the original) and these headers, all UTF-8:

=====================  ==========================================================
``mhst-reason``        why it was rejected (``occurred_at has no UTC offset``)
``mhst-source-topic``  the topic it was read from
``mhst-source-partition``, ``mhst-source-offset``  where it was read, decimal
``mhst-rejected-at``   when the worker rejected it, RFC 3339 (the worker's clock)
=====================  ==========================================================

The reason never quotes the referral id (the engine's reasons do not).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

REASON = "mhst-reason"
SOURCE_TOPIC = "mhst-source-topic"
SOURCE_PARTITION = "mhst-source-partition"
SOURCE_OFFSET = "mhst-source-offset"
REJECTED_AT = "mhst-rejected-at"


@dataclass(frozen=True)
class DeadLetter:
    """One rejected message and where it came from."""

    reason: str
    topic: str
    partition: int
    offset: int
    rejected_at: datetime
    key: bytes | None
    value: bytes | None

    def headers(self) -> list[tuple[str, bytes]]:
        """The Kafka headers that carry everything but the key and value."""
        return [
            (REASON, self.reason.encode()),
            (SOURCE_TOPIC, self.topic.encode()),
            (SOURCE_PARTITION, str(self.partition).encode()),
            (SOURCE_OFFSET, str(self.offset).encode()),
            (REJECTED_AT, self.rejected_at.isoformat().encode()),
        ]

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
        )
