"""Ingestion API tokens: made once, stored as a hash, looked up by hash.

A token is ``mhst_`` and 43 URL-safe characters (32 random bytes); it is shown once, when
``mhst-tracker tokens create`` makes it, and the store keeps only its SHA-256 (a token has
256 bits of entropy, so a plain hash cannot be reversed by guessing; no slow hash is
needed). Each token names its source system (the ``source`` of the API's log lines and
metrics) and the teams it may send events for.

The API keeps the store's tokens in memory (:class:`TokenCache`): reloaded every few
seconds, so a revoked token is refused within :data:`REFRESH_SECONDS`, and at once (at most
once a second) when an unknown token is presented, so a new token works as soon as it is
made without letting unknown tokens query the store at will.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Final

from mhst_tracker.adapters.store.records import ApiToken

PREFIX: Final = "mhst_"
REFRESH_SECONDS: Final = 5.0
MISS_RELOAD_SECONDS: Final = 1.0
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

log = logging.getLogger(__name__)


class TokenError(ValueError):
    """A source name or team list a token cannot have."""


def token_hash(token: str) -> str:
    """The SHA-256 of a token, in hex: what the store keeps."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(source: str, teams: Iterable[str], now: datetime) -> tuple[ApiToken, str]:
    """A new token for ``source`` and ``teams``: the record to store, and the token itself
    (to print once). :class:`TokenError` for a name that is not 1-64 letters, digits, ``.``,
    ``_`` or ``-`` (the source becomes a metric label and a log field)."""
    if _NAME.fullmatch(source) is None:
        raise TokenError(f"source {source!r}: 1-64 letters, digits, '.', '_' or '-'")
    scope = tuple(sorted({team.strip() for team in teams if team.strip()}))
    if not scope:
        raise TokenError("--teams: at least one team")
    for team in scope:
        if _NAME.fullmatch(team) is None:
            raise TokenError(f"team {team!r}: 1-64 letters, digits, '.', '_' or '-'")
    token = PREFIX + secrets.token_urlsafe(32)
    record = ApiToken(
        token_id=secrets.token_hex(6),
        source=source,
        teams=scope,
        token_hash=token_hash(token),
        created_at=now,
    )
    return record, token


class TokensUnavailable(Exception):
    """An unknown token was presented and the store could not be asked about it."""


class TokenCache:
    """The store's live tokens by hash, reloaded every :data:`REFRESH_SECONDS`.

    ``load`` reads the live (not revoked) tokens; ``clock`` is monotonic seconds.
    """

    def __init__(
        self,
        load: Callable[[], Awaitable[Sequence[ApiToken]]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._clock = clock
        self._by_hash: dict[str, ApiToken] = {}
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the tokens have been read from the store at least once."""
        return self._loaded_at != float("-inf")

    async def reload(self) -> None:
        """Read the live tokens from the store now."""
        async with self._lock:
            tokens = await self._load()
            self._by_hash = {token.token_hash: token for token in tokens}
            self._loaded_at = self._clock()

    async def find(self, token: str) -> ApiToken | None:
        """The live token, or ``None``; an unknown one reloads the tokens first, unless
        they were read less than :data:`MISS_RELOAD_SECONDS` ago
        (:class:`TokensUnavailable` if the store does not answer)."""
        digest = token_hash(token)
        found = self._by_hash.get(digest)
        if found is None and self._clock() - self._loaded_at >= MISS_RELOAD_SECONDS:
            try:
                await self.reload()
            except Exception as error:
                raise TokensUnavailable(type(error).__name__) from error
            found = self._by_hash.get(digest)
        return found

    async def refresh_forever(self, interval: float = REFRESH_SECONDS) -> None:
        """Reload every ``interval`` seconds (a store that does not answer is tried again
        at the next one; the tokens last read stay in force meanwhile)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reload()
            except Exception as error:  # the store is down: keep the tokens last read
                log.warning("tokens not reloaded from the store (%s)", type(error).__name__)
