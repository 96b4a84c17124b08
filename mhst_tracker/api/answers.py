"""The API's answers, as msgspec structs: encoded straight to JSON on the request path, and
the source of their schemas in the OpenAPI document."""

from __future__ import annotations

from typing import Literal

import msgspec


class ItemResult(msgspec.Struct, omit_defaults=True):
    """The verdict on one item of the request, by its position (0 is the first)."""

    index: int
    status: Literal["accepted", "rejected"]
    event_id: str | None = None
    """The accepted event's ``event_id``."""
    reason: str | None = None
    """Why the item was rejected: the field and the rule (the dead-letter topic's reason)."""


class IngestResult(msgspec.Struct, omit_defaults=True):
    """What became of each item; with ``detail`` when no event was for the token's teams."""

    accepted: int
    rejected: int
    results: list[ItemResult]
    detail: str | None = None


class Problem(msgspec.Struct):
    """Why the request as a whole was refused."""

    detail: str


class Health(msgspec.Struct):
    """Whether the process is up (``/healthz``) or ready (``/readyz``), and why not."""

    status: str
