"""Hostile input for the events topic: twenty-odd kinds of bad message, made by number.

Each kind is a function of a number ``n`` giving a ``(key, value)`` message for one of 50
referral ids of its own (``B0``..``B49``), so a corpus of thousands has a few hundred of
each. Each kind breaks the contract, the transport's rules or the store's columns in its
own way; whether a reader rejects it is for the test to decide (the stream workers and the
store sink read the same corpus).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from mhst_tracker.dead_letters import BATCH_OVERHEAD, record_size

Message = tuple[bytes | None, bytes | None]


def body(n: int, **fields: Any) -> dict[str, Any]:
    """A valid ``allocated`` event of referral ``B<n % 50>``, with ``fields`` changed."""
    return {
        "event_id": f"bad-{n}",
        "type": "allocated",
        "referral_id": f"B{n % 50}",
        "occurred_at": "2026-05-03T10:00:00+01:00",
        **fields,
    }


def _json(n: int, **fields: Any) -> bytes:
    return orjson.dumps(body(n, **fields))


def _keyed(n: int, value: bytes | None) -> Message:
    return f"B{n % 50}".encode(), value


def nested(n: int, depth: int) -> bytes:
    """A valid event with an unknown field nested ``depth`` lists deep."""
    return _json(n)[:-1] + b',"x":' + b"[" * depth + b"]" * depth + b"}"


def kinds(max_event_bytes: int) -> list[Callable[[int], Message]]:
    """The kinds of bad message, for a worker that accepts events up to ``max_event_bytes``."""
    return [
        lambda n: _keyed(n, nested(n, 1000)),
        lambda n: _keyed(n, nested(n, 100_000)),
        lambda n: _keyed(n, _json(n, notes="y" * max_event_bytes)),  # over the size limit
        lambda n: _keyed(n, b"\xff\xfe" + _json(n)),  # not UTF-8
        lambda n: _keyed(n, _json(n, team_id="T\u00001")),  # NUL
        lambda n: _keyed(n, b"\xef\xbb\xbf" + _json(n)),  # a byte-order mark
        lambda n: _keyed(n, b"[1, 2, 3]"),  # not an object
        lambda n: _keyed(n, b'"9434765919"'),  # a string document
        lambda n: _keyed(n, _json(n, event_id=9434765919)),  # a number for a string
        lambda n: _keyed(n, _json(n, school_id=["S1"])),  # a list for a string
        lambda n: _keyed(n, b'{"event_id": "a", ' + _json(n)[1:]),  # a duplicate key
        lambda n: _keyed(n, orjson.dumps({k: v for k, v in body(n).items() if k != "type"})),
        lambda n: (None, _json(n)),  # no key
        lambda n: (b"someone-else", _json(n)),  # key mismatch
        lambda n: _keyed(n, None),  # no value
        lambda n: _keyed(n, b""),  # an empty value
        lambda n: _keyed(n, _json(n, type="R0999001")),  # an unknown type
        lambda n: _keyed(n, _json(n, occurred_at="2026-05-03T10:00:00")),  # no UTC offset
        lambda n: _keyed(n, _json(n, type="referral_received")),  # a receipt without a team
        lambda n: _keyed(n, _json(n, type="referral_received", team_id="T" * 65)),  # too long
        lambda n: _keyed(n, _json(n, schema_version=2)),
        lambda n: _keyed(n, b"{not json" + str(n).encode()),
    ]


def largest_value(key: bytes, limit: int) -> bytes:
    """A value as large as a topic whose limit is ``limit`` accepts with ``key``, alone."""
    size = limit - BATCH_OVERHEAD - record_size(key, b"", [])
    while BATCH_OVERHEAD + record_size(key, b"x" * size, []) > limit:
        size -= 1
    return b'{"pad": "' + b"x" * (size - 11) + b'"}'
